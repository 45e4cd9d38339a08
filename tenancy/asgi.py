"""Find the business for a websocket from its Host header, before authentication (used by
config.routing.WebsocketScope)."""

from __future__ import annotations

from typing import Any

from django_tenants.utils import remove_www

from tenancy.db import run_in_schema
from tenancy.models import PUBLIC_SCHEMA, Business, Domain


def _business_for_host(hostname: str) -> Business | None:
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    return domain.tenant if domain is not None else None


async def business_for_host(hostname: str) -> Business | None:
    # Domains live in public; on the pool, so a burst of connects does not queue on one thread.
    return await run_in_schema(PUBLIC_SCHEMA, _business_for_host, hostname=hostname)


def host_from_scope(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return remove_www(value.decode("latin-1").split(":")[0].lower())
    return ""
