from __future__ import annotations

import uuid
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

PUBLIC_SCHEMA = "public"
DEFAULT_RETENTION_DAYS = 730  # two years
MIN_RETENTION_DAYS = 30


def business_logo_path(instance: Any, filename: str) -> str:
    """Logos live per business (MEDIA_ROOT/logos/<schema>/); a random name so an upload never
    overwrites another and the URL does not leak the owner's file name."""
    suffix = PurePath(filename).suffix.lower()[:8]
    return f"logos/{instance.schema_name}/{uuid.uuid4().hex}{suffix}"


class Business(TenantMixin):
    """A business on Parley: the tenant. Its customers and conversations live in its own schema."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    class Category(models.TextChoices):
        TRAVEL = "travel", _("Travel and transport")
        RETAIL = "retail", _("Shop and retail")
        FOOD = "food", _("Food and drink")
        FINANCE = "finance", _("Bank and finance")
        HEALTH = "health", _("Health")
        SERVICES = "services", _("Services")
        PUBLIC = "public", _("Public sector")
        OTHER = "other", _("Other")

    class BadgeStatus(models.TextChoices):
        NONE = "none", _("Not applied")
        DRAFT = "draft", _("Draft")
        SUBMITTED = "submitted", _("In review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        REVOKED = "revoked", _("Revoked")

    name = models.CharField(_("legal name"), max_length=200)
    slug = models.SlugField(_("address"), max_length=32, unique=True)
    display_name = models.CharField(_("display name"), max_length=100)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.CharField(_("suspension reason"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    # The public profile customers see; the verification workflow decides when it is complete.
    description = models.TextField(_("description"), max_length=1000, blank=True)
    category = models.CharField(_("category"), max_length=16, choices=Category.choices, blank=True)
    website = models.URLField(_("website"), max_length=300, blank=True)
    email = models.EmailField(_("contact email"), blank=True)
    address = models.CharField(_("postal address"), max_length=300, blank=True)
    logo = models.FileField(_("logo"), upload_to=business_logo_path, max_length=200, blank=True)
    # Set only by the verification service once the code sent to it was entered (E.164); not
    # editable in forms or admin, so nobody can skip the code.
    phone_number = models.CharField(_("phone number"), max_length=20, blank=True, editable=False)
    phone_verified_at = models.DateTimeField(_("phone verified"), null=True, blank=True, editable=False)
    # Mirrors the current badge application, written only by verification.services, so every
    # page can decide about the badge without a join. Not editable: staff decide through the
    # badge-application actions, which audit and notify.
    badge_status = models.CharField(
        _("badge"), max_length=16, choices=BadgeStatus.choices, default=BadgeStatus.NONE, editable=False
    )

    # Privacy (issue 14): resolved conversations older than this are deleted by a daily job.
    conversation_retention_days = models.PositiveIntegerField(
        _("keep resolved conversations (days)"),
        default=DEFAULT_RETENTION_DAYS,
        validators=[MinValueValidator(MIN_RETENTION_DAYS)],
        help_text=_("How long a resolved conversation is kept before it is deleted. At least 30 days."),
    )

    # Provisioning creates the schema explicitly (cloned from a template), never on save().
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        verbose_name = _("business")
        verbose_name_plural = _("businesses")
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name or self.name

    @property
    def is_public(self) -> bool:
        return self.schema_name == PUBLIC_SCHEMA

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def badge_visible(self) -> bool:
        """Whether customers see the green badge: approved by staff and not sent back to review
        (a display-name or phone-number change after approval sets the status to "submitted")."""
        return self.badge_status == self.BadgeStatus.APPROVED

    @property
    def logo_url(self) -> str:
        """Where customers' browsers fetch the logo: /logos/<schema>/<file> on whichever host shows
        it (tenancy.views.business_logo answers on every host, anonymously, same origin for the
        CSP's img-src 'self'); "" without a logo."""
        name = self.logo.name or ""
        return f"/{name}" if name.startswith("logos/") else ""

    @property
    def host(self) -> str:
        return f"{self.slug}.{settings.PARLEY_DOMAIN}"

    def absolute_url(self, path: str = "/") -> str:
        port = settings.PARLEY_PORT
        port_part = f":{port}" if port not in {"80", "443", ""} else ""
        return f"{settings.PARLEY_SCHEME}://{self.host}{port_part}{path}"


class Domain(DomainMixin):
    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")

    def __str__(self) -> str:
        return self.domain


class SpareSchema(models.Model):
    """A business schema copied from the template ahead of time, waiting for a sign-up.

    Sign-up takes one (tenancy.spares) and renames it to the new business's schema, instead of
    copying the template while the owner waits. A spare has no Business and no Domain, so no host
    reaches it and nothing that walks the businesses (migrations, jobs, admin) sees it. Its
    `migrations` fingerprint is that of its django_migrations rows when it was copied: a spare
    whose fingerprint differs from the template's is behind (a migration ran since) and is never
    handed out, only dropped and replaced."""

    schema_name = models.CharField(max_length=63, unique=True)
    migrations = models.CharField(max_length=32)  # md5 of its applied migrations
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("spare schema")
        verbose_name_plural = _("spare schemas")

    def __str__(self) -> str:
        return self.schema_name
