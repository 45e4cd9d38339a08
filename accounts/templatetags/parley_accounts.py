from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.conf import settings

register = template.Library()

MAILBOX_BACKEND = "accounts.mailbox.MailboxBackend"


@register.simple_tag
def dev_mailbox_url() -> str:
    """Where development mails can be read, or "" when mails really go out."""
    if settings.DEBUG and settings.EMAIL_BACKEND == MAILBOX_BACKEND:
        return f"{settings.PARLEY_PUBLIC_URL}/dev/mailbox/"
    return ""


@register.filter
def any_unverified(addresses: Iterable[Any]) -> bool:
    return any(not address.verified for address in addresses)


@register.simple_tag
def parley_public_url() -> str:
    return str(settings.PARLEY_PUBLIC_URL)
