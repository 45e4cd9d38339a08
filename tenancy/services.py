from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from audit.services import audit_record
from tenancy.models import PUBLIC_SCHEMA, Business, Domain
from tenancy.provisioning import clone_template_into
from tenancy.signals import business_suspended
from tenancy.slugs import normalise_slug, schema_name_for, validate_slug

logger = logging.getLogger("parley.tenancy")


def business_create(*, owner: User, name: str, slug: str, display_name: str = "") -> Business:
    """Provision a business: its row, its schema (a copy of the template), its domain and the
    owner's seat -- all in one transaction, so a failure leaves nothing half-made."""
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
        clone_template_into(business.schema_name)
        Domain.objects.create(domain=business.host, tenant=business, is_primary=True)
        Membership.objects.create(user=owner, business=business, role=Membership.Role.OWNER)
        audit_record(action="business.created", actor=owner, business=business, target=business.slug)
    logger.info("provisioned business %s (schema %s)", business.slug, business.schema_name)
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
