from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit.models import AuditEvent

if TYPE_CHECKING:
    from accounts.models import User
    from tenancy.models import Business


def audit_record(
    *,
    action: str,
    actor: User | None = None,
    business: Business | None = None,
    target: object = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit entry. Call it inside the service's transaction so both land or neither."""
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    return AuditEvent.objects.create(
        actor_id=actor_id,
        business=business,
        action=action,
        target=str(target)[:200],
        data=data or {},
    )
