"""Verification use cases: a business proves its number, completes its profile, applies for the
green badge; staff decide. Each function owns its transaction, audit entry and side effects."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from accounts.models import Membership, User
from audit.services import audit_record
from tenancy.models import Business
from verification.models import BadgeApplication, BusinessNotice, PhoneChallenge, notice_text
from verification.otp import otp_check, otp_send
from verification.selectors import (
    badge_application_open,
    badge_current_application,
    badge_reapply_date,
    badge_requirements,
    business_pending_phone,
    business_subject,
)

logger = logging.getLogger("parley.verification")

# --- phone number ---------------------------------------------------------------------------


def business_phone_verification_start(
    *, business: Business, actor: User, phone_number: str, ip_address: str | None = None
) -> str:
    """Send a code to the (already normalised) number. The number becomes the business's only
    once the code comes back; until then the old number, if any, stays verified."""
    # The name goes into a str.format template: braces in it must stay literal.
    name = business.display_name[:40].replace("{", "{{").replace("}", "}}")
    with transaction.atomic():
        otp_send(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE,
            subject=business_subject(business),
            phone_number=phone_number,
            ip_address=ip_address,
            message=_("Parley: {code} is your code to verify this number for %(name)s. It expires in 10 minutes.")
            % {"name": name},
        )
        audit_record(action="business.phone_code_sent", actor=actor, business=business, target=phone_number)
    return phone_number


def business_phone_verification_confirm(*, business: Business, actor: User, code: str) -> bool:
    """Check the code for the pending number; on success the number is the business's, verified
    now. A changed number sends an approved badge back to review."""
    pending = business_pending_phone(business=business)
    if pending is None:
        return False
    with transaction.atomic():
        ok = otp_check(
            purpose=PhoneChallenge.Purpose.BUSINESS_PHONE,
            subject=business_subject(business),
            phone_number=pending,
            code=code,
        )
        if not ok:
            return False
        business = Business.objects.select_for_update().get(pk=business.pk)
        previous = business.phone_number
        business.phone_number = pending
        business.phone_verified_at = timezone.now()
        business.save(update_fields=["phone_number", "phone_verified_at", "updated_at"])
        audit_record(
            action="business.phone_verified",
            actor=actor,
            business=business,
            target=pending,
            data={"previous": previous},
        )
        if previous and previous != pending:
            _badge_return_to_review(business=business, actor=actor, reason=gettext_noop("The phone number changed."))
    return True


# --- profile --------------------------------------------------------------------------------

PROFILE_FIELDS = ("display_name", "description", "category", "website", "email", "address")


def business_profile_update(
    *,
    business: Business,
    actor: User,
    display_name: str,
    description: str,
    category: str,
    website: str,
    email: str,
    address: str,
    logo: UploadedFile | None = None,
    remove_logo: bool = False,
) -> Business:
    """Save the public profile. A new display name after approval hides the badge until staff
    approve again: customers trust the name next to the badge."""
    display_name = display_name.strip()
    if not display_name:
        raise ValidationError({"display_name": _("Please enter the name customers will see.")})
    values: dict[str, Any] = {
        "display_name": display_name[:100],
        "description": description.strip(),
        "category": category,
        "website": website.strip(),
        "email": email.strip(),
        "address": address.strip(),
    }
    old_logo_name = ""
    with transaction.atomic():
        business = Business.objects.select_for_update().get(pk=business.pk)
        changed = [name for name, value in values.items() if getattr(business, name) != value]
        name_changed = business.display_name != values["display_name"]
        old_name = business.display_name
        for name, value in values.items():
            setattr(business, name, value)
        if logo is not None:
            old_logo_name = business.logo.name or ""
            business.logo.save(logo.name or "logo", logo, save=False)
            changed.append("logo")
        elif remove_logo and business.logo:
            old_logo_name = business.logo.name or ""
            business.logo = ""  # type: ignore[assignment]
            changed.append("logo")
        business.save()
        if changed:
            audit_record(action="business.profile_updated", actor=actor, business=business, data={"fields": changed})
        if name_changed:
            _badge_return_to_review(
                business=business,
                actor=actor,
                reason=gettext_noop("The display name changed from “%(old)s” to “%(new)s”."),
                reason_params={"old": old_name, "new": business.display_name},
            )
    if old_logo_name:
        storage = Business._meta.get_field("logo").storage  # type: ignore[attr-defined]
        transaction.on_commit(lambda: storage.delete(old_logo_name))
    return business


# --- badge ----------------------------------------------------------------------------------


def badge_application_save(
    *,
    business: Business,
    actor: User,
    website: str,
    press_links: str,
    registration_number: str,
    submit: bool,
) -> BadgeApplication:
    """Save the evidence as a draft, or submit it for review when every requirement is met."""
    membership = Membership.objects.filter(user=actor, business=business).first()
    if membership is None or not membership.is_owner:
        raise PermissionDenied(_("Only an owner of the business can apply for the badge."))
    with transaction.atomic():
        business = Business.objects.select_for_update().get(pk=business.pk)
        application = badge_current_application(business=business)
        reapply = badge_reapply_date(business=business)
        if not badge_application_open(application=application, reapply=reapply):
            waiting = {BadgeApplication.Status.REJECTED, BadgeApplication.Status.REVOKED}
            if application is not None and application.status in waiting and reapply is not None:
                raise ValidationError(
                    _("You can apply again from %(date)s, 30 days after the last decision.")
                    % {"date": timezone.localtime(reapply).strftime("%Y-%m-%d")}
                )
            raise ValidationError(_("Your application is already with our team; you cannot change it now."))
        if application is None or application.status != BadgeApplication.Status.DRAFT:
            application = BadgeApplication(business=business, created_by=actor)
        if submit:
            missing = [r.label for r in badge_requirements(business=business, user=actor) if not r.done]
            if missing:
                raise ValidationError(
                    _("Before you apply: %(missing)s.") % {"missing": "; ".join(str(m) for m in missing)}
                )
            if not website.strip() and not business.website:
                raise ValidationError({"website": _("Please give your official website as evidence.")})
        application.website = website.strip() or business.website
        application.press_links = "\n".join(line.strip() for line in press_links.splitlines() if line.strip())
        application.registration_number = registration_number.strip()
        if submit:
            application.status = BadgeApplication.Status.SUBMITTED
            application.submitted_at = timezone.now()
            application.submitted_by = actor
        application.save()
        business.badge_status = application.status
        business.save(update_fields=["badge_status", "updated_at"])
        audit_record(
            action="badge.submitted" if submit else "badge.draft_saved",
            actor=actor,
            business=business,
            target=application.pk,
        )
    return application


@dataclass(frozen=True)
class Notice:
    """A decision's dashboard notice: msgids and their parameters, translated when shown."""

    level: str
    title: str
    body: str
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _decide(
    *,
    application: BadgeApplication,
    reviewer: User,
    reason: str,
    new_status: str,
    allowed_from: set[str],
    action: str,
    notice: Notice,
    email_subject: str,
) -> BadgeApplication:
    with transaction.atomic():
        application = BadgeApplication.objects.select_for_update().select_related("business").get(pk=application.pk)
        if application.status not in allowed_from:
            raise ValidationError(
                _("This application is “%(status)s”; that decision does not apply to it.")
                % {"status": application.get_status_display()}
            )
        business = Business.objects.select_for_update().get(pk=application.business_id)
        now = timezone.now()
        application.status = new_status
        application.reviewed_at = now
        application.reviewed_by = reviewer
        application.decision_reason = reason.strip()
        application.save()
        business.badge_status = new_status
        business.save(update_fields=["badge_status", "updated_at"])
        audit_record(
            action=action,
            actor=reviewer,
            business=business,
            target=application.pk,
            data={"reason": application.decision_reason},
        )
        # Stored untranslated, translated for whoever reads it (the reviewer's language is not the business's).
        stored = BusinessNotice.objects.create(
            business=business,
            level=notice.level,
            title=notice.title,
            body=notice.body,
            params=notice.params,
            note=notice.note,
        )
        # The mail is written now, in the reviewer's language (as before), from the same texts.
        title, body = stored.shown_title, stored.shown_body
        owners = list(
            Membership.objects.filter(business=business, role=Membership.Role.OWNER).values_list(
                "user__email", flat=True
            )
        )
        email_body = "\n\n".join(
            part
            for part in (title, body, _("Open your dashboard: %s") % business.absolute_url("/verification/"))
            if part
        )
        transaction.on_commit(lambda: _email_owners(owners, email_subject, email_body))
    return application


def _email_owners(recipients: list[str], subject: str, body: str) -> None:
    if not recipients:
        return
    try:
        send_mail(subject, body, None, recipients)
    except Exception:
        # The decision stands and the dashboard notice is there; a mail outage must not undo it.
        logger.exception("could not email badge decision to %s", recipients)


def badge_application_approve(*, application: BadgeApplication, reviewer: User, reason: str = "") -> BadgeApplication:
    name = application.business.display_name
    return _decide(
        application=application,
        reviewer=reviewer,
        reason=reason,
        new_status=BadgeApplication.Status.APPROVED,
        allowed_from={BadgeApplication.Status.SUBMITTED},
        action="badge.approved",
        notice=Notice(
            BusinessNotice.Level.SUCCESS,
            gettext_noop("Your green badge is live"),
            gettext_noop("Customers now see the verified badge next to %(name)s."),
            {"name": name},
            note=reason.strip(),
        ),
        email_subject=_("Parley: %(name)s is verified") % {"name": name},
    )


def badge_application_reject(*, application: BadgeApplication, reviewer: User, reason: str) -> BadgeApplication:
    if not reason.strip():
        raise ValidationError(_("Please give the business a reason for the rejection."))
    return _decide(
        application=application,
        reviewer=reviewer,
        reason=reason,
        new_status=BadgeApplication.Status.REJECTED,
        allowed_from={BadgeApplication.Status.SUBMITTED},
        action="badge.rejected",
        notice=Notice(
            BusinessNotice.Level.WARNING,
            gettext_noop("Your badge application was not approved"),
            gettext_noop("Reason: %(reason)s You can apply again in 30 days."),
            {"reason": reason.strip()},
        ),
        email_subject=_("Parley: your badge application for %(name)s") % {"name": application.business.display_name},
    )


def badge_revoke(*, application: BadgeApplication, reviewer: User, reason: str) -> BadgeApplication:
    if not reason.strip():
        raise ValidationError(_("Please give the business a reason for revoking the badge."))
    return _decide(
        application=application,
        reviewer=reviewer,
        reason=reason,
        new_status=BadgeApplication.Status.REVOKED,
        allowed_from={BadgeApplication.Status.APPROVED, BadgeApplication.Status.SUBMITTED},
        action="badge.revoked",
        notice=Notice(
            BusinessNotice.Level.WARNING,
            gettext_noop("Your green badge was revoked"),
            gettext_noop("Reason: %(reason)s You can apply again in 30 days."),
            {"reason": reason.strip()},
        ),
        email_subject=_("Parley: the badge of %(name)s was revoked") % {"name": application.business.display_name},
    )


def _badge_return_to_review(
    *, business: Business, actor: User, reason: str, reason_params: dict[str, str] | None = None
) -> None:
    """Inside the caller's transaction: an approved badge goes back to staff and is hidden.
    `reason` is a msgid (with `reason_params`): the notice translates it for each reader."""
    reason_params = reason_params or {}
    reason_text = notice_text(reason, reason_params)
    application = (
        BadgeApplication.objects.select_for_update()
        .filter(business=business, status=BadgeApplication.Status.APPROVED)
        .order_by("-created_at", "-id")
        .first()
    )
    if application is None:
        return
    now = timezone.now()
    application.status = BadgeApplication.Status.SUBMITTED
    application.returned_at = now
    application.returned_reason = reason_text[:300]
    application.save(update_fields=["status", "returned_at", "returned_reason"])
    business.badge_status = Business.BadgeStatus.SUBMITTED
    business.save(update_fields=["badge_status", "updated_at"])
    BusinessNotice.objects.create(
        business=business,
        level=BusinessNotice.Level.WARNING,
        title=gettext_noop("Your badge is back in review"),
        body=gettext_noop("%(reason)s Customers don't see the badge until our team approves the change."),
        params={"reason": {"msgid": reason, "params": reason_params}},
    )
    audit_record(
        action="badge.returned_to_review",
        actor=actor,
        business=business,
        target=application.pk,
        data={"reason": reason_text},
    )


def notice_dismiss(*, business: Business, actor: User, notice_id: int) -> None:
    # Scoped by business: another business's notice id simply matches nothing.
    BusinessNotice.objects.filter(business=business, pk=notice_id, dismissed_at__isnull=True).update(
        dismissed_at=timezone.now()
    )
