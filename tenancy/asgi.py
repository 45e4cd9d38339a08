"""Find the business for a websocket from its Host header, before authentication (used by
config.routing.WebsocketScope)."""

from __future__ import annotations

import weakref
from typing import Any

from django_tenants.utils import remove_www

from tenancy.db import run_in_schema
from tenancy.models import PUBLIC_SCHEMA, Business, Domain


def _business_for_host(hostname: str) -> Business | None:
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    return domain.tenant if domain is not None else None


def _field_values(business: Business) -> tuple[Any, ...]:
    return tuple(getattr(business, field.attname) for field in business._meta.concrete_fields)


class SharedBusinesses:
    """One Business instance per business for the process's sockets, instead of one per socket
    (issue 9: 10,000 idle sockets; an instance with its state is ~1 KiB).

    Not a cache: every connect still reads the business for its host from the database, so a
    moved domain, a suspension or a rename counts from the next connect exactly as before. The
    instance read is swapped for the shared one only when it is the same business (primary key)
    with every field equal; otherwise it becomes the shared one. Keyed by primary key, so two
    businesses never share anything; weak, so the last socket of a business takes it along.
    Consumers treat the instance as read-only (no socket code path assigns to it)."""

    def __init__(self) -> None:
        self.by_pk: weakref.WeakValueDictionary[Any, Business] = weakref.WeakValueDictionary()

    def share(self, business: Business | None) -> Business | None:
        if business is None or business.pk is None:
            return business
        shared = self.by_pk.get(business.pk)
        if shared is not None and type(shared) is type(business) and _field_values(shared) == _field_values(business):
            return shared
        self.by_pk[business.pk] = business
        return business


shared_businesses = SharedBusinesses()


async def business_for_host(hostname: str) -> Business | None:
    # Domains live in public; on the pool, so a burst of connects does not queue on one thread.
    business = await run_in_schema(PUBLIC_SCHEMA, _business_for_host, hostname=hostname)
    return shared_businesses.share(business)


def host_from_scope(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return remove_www(value.decode("latin-1").split(":")[0].lower())
    return ""
