from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_tenants.models import TenantMixin
from django_tenants.signals import post_schema_sync

from accounts.models import Membership, User
from audit.services import audit_record
from config.jobs import defer_job
from tenancy import spares
from tenancy.models import PUBLIC_SCHEMA, Business, Domain
from tenancy.signals import business_suspended
from tenancy.slugs import normalise_slug, schema_name_for, validate_slug

logger = logging.getLogger("parley.tenancy")


def business_create(*, owner: User, name: str, slug: str, display_name: str = "") -> Business:
    """Provision a business: its row, its schema (a spare renamed, or a copy of the template when
    none is ready: tenancy.spares), its domain and the owner's seat -- all in one transaction, so
    a failure leaves nothing half-made (and gives a taken spare back)."""
    slug = normalise_slug(slug)
    validate_slug(slug)
    name = name.strip()
    if not name:
        raise ValidationError({"name": _("Please enter the business's name.")})
    if Business.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": _("This address is already taken. Please choose another.")})

    with transaction.atomic():
        business = Business.objects.create(
            schema_name=schema_name_for(slug),
            slug=slug,
            name=name,
            display_name=(display_name or name).strip()[:100],
        )
        source = spares.schema_provision(schema_name=business.schema_name)
        Domain.objects.create(domain=business.host, tenant=business, is_primary=True)
        Membership.objects.create(user=owner, business=business, role=Membership.Role.OWNER)
        audit_record(
            action="business.created", actor=owner, business=business, target=business.slug, data={"schema": source}
        )
        # What django-tenants sends once a tenant's schema exists and is migrated (it would send
        # it itself with auto_create_schema, which provisioning replaces).
        post_schema_sync.send(sender=TenantMixin, tenant=business.serializable_fields())
        if spares.pool_size():
            # Replace the spare (or make the first ones) after commit; one waiting job is enough.
            defer_job(spares.REFILL_TASK, queueing_lock=spares.REFILL_TASK, skip_if_queued=True)
    logger.info("provisioned business %s (schema %s, %s)", business.slug, business.schema_name, source)
    return business


def business_suspend(*, business: Business, actor: User | None, reason: str) -> Business:
    with transaction.atomic():
        business.status = Business.Status.SUSPENDED
        business.suspended_reason = reason[:300]
        business.save(update_fields=["status", "suspended_reason", "updated_at"])
        audit_record(
            action="business.suspended", actor=actor, business=business, target=business.slug, data={"reason": reason}
        )
        # Apps act on it (messaging closes every open socket on the business's host after commit).
        business_suspended.send(sender=Business, business=business)
    return business


def business_reactivate(*, business: Business, actor: User | None) -> Business:
    with transaction.atomic():
        business.status = Business.Status.ACTIVE
        business.suspended_reason = ""
        business.save(update_fields=["status", "suspended_reason", "updated_at"])
        audit_record(action="business.reactivated", actor=actor, business=business, target=business.slug)
    return business


def public_tenant_ensure() -> Business:
    """The public schema is a tenant too (django-tenants); it answers on the platform's hosts."""
    public, _created = Business.objects.get_or_create(
        schema_name=PUBLIC_SCHEMA,
        defaults={"name": "Parley", "slug": "public", "display_name": "Parley"},
    )
    for host in (settings.PARLEY_DOMAIN, "localhost", "127.0.0.1", "testserver"):
        Domain.objects.get_or_create(
            domain=host, defaults={"tenant": public, "is_primary": host == settings.PARLEY_DOMAIN}
        )
    return public
