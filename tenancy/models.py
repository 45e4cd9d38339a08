from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin

PUBLIC_SCHEMA = "public"


class Business(TenantMixin):
    """A business on Parley: the tenant. Its customers and conversations live in its own schema."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    name = models.CharField(_("legal name"), max_length=200)
    slug = models.SlugField(_("address"), max_length=32, unique=True)
    display_name = models.CharField(_("display name"), max_length=100)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.CharField(_("suspension reason"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

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
        """Whether customers see the green badge. The verification workflow decides."""
        return False

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
