"""Rules for a business's address (<slug>.parley.localhost)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

SLUG_MIN_LENGTH = 3
SLUG_MAX_LENGTH = 32
_SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")

# Subdomains that belong to the platform itself or would mislead customers.
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "app",
        "assets",
        "auth",
        "billing",
        "blog",
        "cdn",
        "chat",
        "dashboard",
        "dev",
        "docs",
        "ftp",
        "help",
        "imap",
        "inbox",
        "login",
        "mail",
        "me",
        "media",
        "parley",
        "pop",
        "public",
        "smtp",
        "staff",
        "static",
        "status",
        "stripe",
        "support",
        "template",
        "test",
        "webhook",
        "webhooks",
        "ws",
        "www",
    }
)


def normalise_slug(raw: str) -> str:
    return raw.strip().lower()


def validate_slug(slug: str) -> None:
    """Raise ValidationError with a message a business owner can act on."""
    if len(slug) < SLUG_MIN_LENGTH:
        raise ValidationError(
            _("The address must be at least %(n)d characters long.") % {"n": SLUG_MIN_LENGTH},
            code="too_short",
        )
    if len(slug) > SLUG_MAX_LENGTH:
        raise ValidationError(
            _("The address can be at most %(n)d characters long.") % {"n": SLUG_MAX_LENGTH},
            code="too_long",
        )
    if not _SLUG_PATTERN.match(slug):
        raise ValidationError(
            _("Use only lowercase letters, digits and hyphens, starting and ending with a letter or digit."),
            code="invalid",
        )
    if "--" in slug:
        raise ValidationError(_("The address cannot contain two hyphens in a row."), code="invalid")
    if slug in RESERVED_SLUGS or slug.startswith(("pg-", "xn--")):
        raise ValidationError(
            _("“%(slug)s” is reserved. Please choose another address.") % {"slug": slug}, code="reserved"
        )


def schema_name_for(slug: str) -> str:
    # PostgreSQL identifiers cannot contain hyphens unquoted; the prefix keeps business schemas
    # apart from `public`, the template and any extension schema.
    return "b_" + slug.replace("-", "_")
