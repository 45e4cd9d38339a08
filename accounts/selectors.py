"""Reads for account pages."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

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


def person_named(user: User | None) -> str:
    """Someone as an invitation names them: display name and address, or the address alone."""
    if user is None:
        return _("A team member")
    return f"{user.full_name} ({user.email})" if user.full_name else user.email


def seat_invitation_key(*, user: User) -> str:
    """The key of an invitation link: allauth's password-reset token for the user (`<uid>-<token>`).
    It expires after PASSWORD_RESET_TIMEOUT and is spent once the password is set."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str

    return f"{user_pk_to_url_str(user)}-{default_token_generator.make_token(user)}"


def seat_invitation_of(*, business: Business, key: str) -> Membership | None:
    """The seat in `business` an invitation link names, while the link is valid; else None
    (malformed, forged, expired, already used, or the person has no seat here any more).
    Only for someone who has no password yet: an account with one logs in as usual."""
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import url_str_to_user_pk

    uid, _, token = key.partition("-")
    if not uid or not token or len(key) > 200:
        return None
    try:
        user_pk = url_str_to_user_pk(uid)
    except (ValueError, TypeError, OverflowError):
        return None
    membership = (
        Membership.objects.select_related("user", "business", "added_by")
        .filter(business_id=business.pk, user_id=user_pk, user__is_active=True)
        .first()
    )
    if membership is None or membership.user.has_usable_password():
        return None
    if not default_token_generator.check_token(membership.user, token):
        return None
    return membership


def seats_of_business(*, business: Business) -> QuerySet[Membership]:
    """Who holds a seat in the business (the team page), by role, then email."""
    return Membership.objects.filter(business_id=business.pk).select_related("user").order_by("role", "user__email")


def seat_of_business(*, business: Business, membership_id: int) -> Membership:
    """One seat of this business; another business's seat is as missing as none (404)."""
    seat = seats_of_business(business=business).filter(pk=membership_id).first()
    if seat is None:
        raise Http404
    return seat
