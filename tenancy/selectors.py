from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Membership, User
from tenancy.models import PUBLIC_SCHEMA, Business


def businesses_for_user(*, user: User) -> QuerySet[Business]:
    return Business.objects.filter(memberships__user=user).exclude(schema_name=PUBLIC_SCHEMA).order_by("display_name")


def membership_for(*, user: User, business: Business) -> Membership | None:
    if not user.is_authenticated or business.is_public:
        return None
    return Membership.objects.filter(user=user, business=business).first()


def logo_is_current(*, schema: str, name: str) -> bool:
    """Whether `name` (logos/<schema>/<file>) is that business's logo right now."""
    return Business.objects.filter(schema_name=schema, logo=name).exists()
