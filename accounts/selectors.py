"""Reads for account pages."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db.models import QuerySet

from accounts.models import MailboxMessage, User

MAILBOX_PAGE_SIZE = 50


def mailbox_recent(*, to: str = "") -> QuerySet[MailboxMessage]:
    mails = MailboxMessage.objects.all()
    if to:
        mails = mails.filter(to__icontains=to)
    return mails[:MAILBOX_PAGE_SIZE]


def user_email_verified(*, user: User) -> bool:
    return EmailAddress.objects.filter(user_id=user.pk, verified=True).exists()
