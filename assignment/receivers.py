"""Reactions to other apps' signals."""

from __future__ import annotations

from typing import Any

from django_tenants.utils import schema_context


def on_seat_removed(*, business: Any, user_id: int, **kwargs: Any) -> None:
    """A removed agent's conversations return to the queue at once, in the removing transaction
    (so a seat is never gone while conversations still wait on its holder)."""
    from assignment.services import agent_removed

    with schema_context(business.schema_name):
        agent_removed(business=business, user_id=user_id)
