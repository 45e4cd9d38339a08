"""Reads for account pages."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db.models import QuerySet
from django.http import Http404

from accounts.models import MailboxMessage, Membership, User
from tenancy.models import Business

MAILBOX_PAGE_SIZE = 50


def mailbox_recent(*, to: str = "") -> QuerySet[MailboxMessage]:
    mails = MailboxMessage.objects.all()
    if to:
        mails = mails.filter(to__icontains=to)
    return mails[:MAILBOX_PAGE_SIZE]


def user_email_verified(*, user: User) -> bool:
    return EmailAddress.objects.filter(user_id=user.pk, verified=True).exists()


def seats_of_business(*, business: Business) -> QuerySet[Membership]:
    """Who holds a seat in the business (the team page), by role, then email."""
    return Membership.objects.filter(business_id=business.pk).select_related("user").order_by("role", "user__email")


def seat_of_business(*, business: Business, membership_id: int) -> Membership:
    """One seat of this business; another business's seat is as missing as none (404)."""
    seat = seats_of_business(business=business).filter(pk=membership_id).first()
    if seat is None:
        raise Http404
    return seat
