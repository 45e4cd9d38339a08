from __future__ import annotations

from allauth.account.models import EmailAddress
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import Membership, User
from accounts.signals import seat_removed
from audit.services import audit_record
from messaging.revocation import rights_revoke_user
from tenancy.models import Business


def seat_add(*, business: Business, actor: User, email: str, role: str, full_name: str = "") -> Membership:
    """Give someone a seat. A new email gets an account and an invitation to set a password."""
    email = email.strip().lower()
    if role not in Membership.Role.values:
        raise ValidationError({"role": _("Choose a valid role.")})
    actor_seat = Membership.objects.filter(user=actor, business=business).first()
    if actor_seat is None or not actor_seat.can_manage:
        raise ValidationError(_("Only owners and admins can add seats."))
    if role == Membership.Role.OWNER and not actor_seat.is_owner:
        raise ValidationError({"role": _("Only an owner can add another owner.")})

    with transaction.atomic():
        user, created = User.objects.get_or_create(email=email, defaults={"full_name": full_name.strip()})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            # Confirmed when they follow the invitation's set-password link (accounts.security_log).
            EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
        if Membership.objects.filter(user=user, business=business).exists():
            raise ValidationError({"email": _("%(email)s already has a seat here.") % {"email": email}})
        membership = Membership.objects.create(user=user, business=business, role=role)
        audit_record(action="seat.added", actor=actor, business=business, target=email, data={"role": role})
        if created:
            transaction.on_commit(lambda: _send_invitation(user=user, business=business))
    return membership


def user_display_name_set(*, user: User, full_name: str, actor: User | None = None) -> User:
    """Set the name customers see on this person's replies."""
    full_name = " ".join(full_name.split())
    if not full_name:
        raise ValidationError({"full_name": _("Enter the name customers should see.")})
    if len(full_name) > 150:
        raise ValidationError({"full_name": _("Keep the name under 150 characters.")})
    with transaction.atomic():
        previous = user.full_name
        user.full_name = full_name
        user.save(update_fields=["full_name"])
        audit_record(
            action="user.display_name_set",
            actor=actor or user,
            target=user.email,
            data={"from": previous, "to": full_name},
        )
    return user


def user_email_mark_verified(*, user: User) -> None:
    """Mark the account's own address confirmed (after a link sent to it was followed)."""
    EmailAddress.objects.update_or_create(
        user=user, email__iexact=user.email, defaults={"email": user.email, "verified": True, "primary": True}
    )


def seat_remove(*, membership: Membership, actor: User) -> None:
    business = membership.business
    actor_seat = Membership.objects.filter(user=actor, business=business).first()
    if actor_seat is None or not actor_seat.can_manage:
        raise ValidationError(_("Only owners and admins can remove seats."))
    if membership.is_owner and not actor_seat.is_owner:
        raise ValidationError(_("Only an owner can remove an owner."))
    if membership.is_owner and business.memberships.filter(role=Membership.Role.OWNER).count() == 1:
        raise ValidationError(_("A business needs at least one owner."))
    with transaction.atomic():
        audit_record(
            action="seat.removed",
            actor=actor,
            business=business,
            target=membership.user.email,
            data={"role": membership.role},
        )
        membership.delete()
        # Their open inbox sockets close after commit (and re-check on their next frame).
        rights_revoke_user(user_id=membership.user_id)
        # Their conversations go back to the queue (assignment), in this same transaction.
        seat_removed.send(sender=Membership, business=business, user_id=membership.user_id)


def _send_invitation(*, user: User, business: Business) -> None:
    from allauth.account.forms import default_token_generator
    from allauth.account.utils import user_pk_to_url_str
    from django.conf import settings

    uid = user_pk_to_url_str(user)
    token = default_token_generator.make_token(user)
    link = f"{settings.PARLEY_PUBLIC_URL}/accounts/password/reset/key/{uid}-{token}/"
    send_mail(
        subject=_("You have a seat at %(business)s on Parley") % {"business": business.display_name},
        message=_(
            "You were given a seat at %(business)s on Parley.\n\nSet your password here: %(link)s\n"
            "Then open %(dashboard)s"
        )
        % {"business": business.display_name, "link": link, "dashboard": business.absolute_url("/")},
        from_email=None,
        recipient_list=[user.email],
    )
