from __future__ import annotations

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import Membership, User
from accounts.selectors import person_named, seat_invitation_key, seat_invitation_of
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
        membership = Membership.objects.create(user=user, business=business, role=role, added_by=actor)
        audit_record(action="seat.added", actor=actor, business=business, target=email, data={"role": role})
        # A new person (or one who never finished an earlier invitation) is invited to set a
        # password; someone who already has an account is told who added them where, so no
        # seat is given behind a person's back.
        send = _send_invitation if created or not user.has_usable_password() else _send_seat_notice
        transaction.on_commit(lambda: send(membership=membership))
    return membership


def seat_invitation_accept(*, business: Business, key: str, password: str) -> Membership:
    """The invited person sets their password through the invitation link (see `seat_invitation_of`).

    The link is allauth's password-reset token: it expires (PASSWORD_RESET_TIMEOUT) and works
    once, since setting the password changes the hash it signs. Following it proves the address.
    """
    with transaction.atomic():
        membership = seat_invitation_of(business=business, key=key)
        if membership is not None:
            # Two submits of one link at once: the second waits here and finds the token spent.
            User.objects.select_for_update().filter(pk=membership.user_id).get()
            membership = seat_invitation_of(business=business, key=key)
        if membership is None:
            raise ValidationError(_("This invitation link is no longer valid."), code="invalid_link")
        user = membership.user
        password_validation.validate_password(password, user)
        user.set_password(password)
        user.save(update_fields=["password"])
        user_email_mark_verified(user=user)
        audit_record(
            action="seat.invitation_accepted",
            actor=user,
            business=business,
            target=user.email,
            data={"role": membership.role},
        )
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


def _send_invitation(*, membership: Membership) -> None:
    user, business = membership.user, membership.business
    link = business.absolute_url(f"/join/{seat_invitation_key(user=user)}/")
    days = max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)
    values = {
        "inviter": person_named(membership.added_by),
        "business": business.display_name,
        "role": membership.get_role_display(),
        "link": link,
        "email": user.email,
        "days": days,
    }
    send_mail(
        subject=_("%(inviter)s invited you to %(business)s on Parley") % values,
        message=(
            _(
                "%(inviter)s invited you to join %(business)s on Parley with the role %(role)s.\n\n"
                "Set your password and join here:\n%(link)s\n\n"
                "You will log in as %(email)s."
            )
            % values
            + "\n"
            + ngettext(
                "The link works once and expires in %(days)s day.",
                "The link works once and expires in %(days)s days.",
                days,
            )
            % values
        ),
        from_email=None,
        recipient_list=[user.email],
    )


def _send_seat_notice(*, membership: Membership) -> None:
    user, business = membership.user, membership.business
    values = {
        "inviter": person_named(membership.added_by),
        "business": business.display_name,
        "role": membership.get_role_display(),
        "link": business.absolute_url("/"),
    }
    send_mail(
        subject=_("You were added to %(business)s on Parley") % values,
        message=_(
            "%(inviter)s added you to %(business)s on Parley with the role %(role)s.\n\n"
            "Open %(business)s here (log in with your Parley account):\n%(link)s\n\n"
            "If you did not expect this, ask %(inviter)s to remove your seat."
        )
        % values,
        from_email=None,
        recipient_list=[user.email],
    )
