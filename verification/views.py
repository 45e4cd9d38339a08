"""The dashboard's verification page (business host) and the SMS outbox page (public host)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from tenancy.access import member_required
from verification import selectors
from verification.forms import BadgeApplicationForm, CodeForm, PhoneForm, ProfileForm, client_ip, outbox_link
from verification.models import BadgeApplication
from verification.otp import CODE_REJECTED_MESSAGE, OtpRateLimited
from verification.phone import phone_display
from verification.services import (
    badge_application_save,
    business_phone_verification_confirm,
    business_phone_verification_start,
    business_profile_update,
    notice_dismiss,
)


def _page(request: HttpRequest, status: int = 200, **forms: Any) -> HttpResponse:
    business = request.tenant  # type: ignore[attr-defined]
    business.refresh_from_db()
    user = request.user
    application = selectors.badge_current_application(business=business)
    pending = selectors.business_pending_phone(business=business)
    requirements = selectors.badge_requirements(business=business, user=user)  # type: ignore[arg-type]
    reapply = selectors.badge_reapply_date(business=business)
    # A draft's evidence is shown again; a decided application's is not carried over.
    draft = application if application and application.status == BadgeApplication.Status.DRAFT else None
    initial_evidence = {
        "website": (application.website if application else "") or business.website,
        "press_links": draft.press_links if draft else "",
        "registration_number": draft.registration_number if draft else "",
    }
    context = {
        "section": "verification",
        "business": business,
        "notices": selectors.business_notices(business=business),
        "phone_display": phone_display(business.phone_number) if business.phone_number else "",
        "pending_phone": phone_display(pending) if pending else "",
        "phone_form": forms.get("phone_form") or PhoneForm(),
        "code_form": forms.get("code_form") or CodeForm(),
        "profile_form": forms.get("profile_form") or ProfileForm(instance=business),
        "profile_checks": selectors.profile_checklist(business=business),
        "profile_percent": selectors.profile_completeness(business=business),
        "badge_form": forms.get("badge_form") or BadgeApplicationForm(initial=initial_evidence),
        "application": application,
        "application_editable": selectors.badge_application_open(application=application, reapply=reapply),
        "requirements": requirements,
        "requirements_met": all(r.done for r in requirements),
        "reapply_date": reapply if reapply and reapply > timezone.now() else None,
        "outbox_url": outbox_link(),
        "is_owner": bool(request.membership and request.membership.is_owner),  # type: ignore[attr-defined]
    }
    return render(request, "verification/page.html", context, status=status)


@member_required(manage=True)
def verification(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@member_required(manage=True)
def phone_start(request: HttpRequest) -> HttpResponse:
    form = PhoneForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, phone_form=form)
    try:
        business_phone_verification_start(
            business=request.tenant,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            phone_number=form.cleaned_data["e164"],
            ip_address=client_ip(request),
        )
    except OtpRateLimited as error:
        form.add_error(None, error.message)
        return _page(request, status=429, phone_form=form)
    messages.success(
        request,
        _("We sent a 6-digit code to %(number)s. Enter it below.")
        % {"number": phone_display(form.cleaned_data["e164"])},
    )
    return redirect("verification")


@require_POST
@member_required(manage=True)
def phone_confirm(request: HttpRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, code_form=form)
    ok = business_phone_verification_confirm(
        business=request.tenant,  # type: ignore[attr-defined]
        actor=request.user,  # type: ignore[arg-type]
        code=form.cleaned_data["code"],
    )
    if not ok:
        form.add_error("code", str(CODE_REJECTED_MESSAGE))
        return _page(request, status=400, code_form=form)
    messages.success(request, _("Your phone number is verified."))
    return redirect("verification")


@require_POST
@member_required(manage=True)
def profile_save(request: HttpRequest) -> HttpResponse:
    business = request.tenant  # type: ignore[attr-defined]
    form = ProfileForm(request.POST, request.FILES, instance=business)
    if not form.is_valid():
        business.refresh_from_db()
        return _page(request, status=400, profile_form=form)
    try:
        business_profile_update(
            business=business,
            actor=request.user,  # type: ignore[arg-type]
            display_name=form.cleaned_data["display_name"],
            description=form.cleaned_data["description"],
            category=form.cleaned_data["category"],
            website=form.cleaned_data["website"],
            email=form.cleaned_data["email"],
            address=form.cleaned_data["address"],
            logo=request.FILES.get("logo"),
            remove_logo=form.cleaned_data.get("remove_logo", False),
        )
    except ValidationError as error:
        form.add_error(None, error)
        return _page(request, status=400, profile_form=form)
    messages.success(request, _("Profile saved."))
    return redirect("verification")


@require_POST
@member_required(manage=True)
def badge_apply(request: HttpRequest) -> HttpResponse:
    form = BadgeApplicationForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, badge_form=form)
    submit = request.POST.get("action") == "submit"
    try:
        badge_application_save(
            business=request.tenant,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            website=form.cleaned_data["website"],
            press_links=form.cleaned_data["press_links"],
            registration_number=form.cleaned_data["registration_number"],
            submit=submit,
        )
    except PermissionDenied as error:
        form.add_error(None, str(error))
        return _page(request, status=403, badge_form=form)
    except ValidationError as error:
        form.add_error(None, error)
        return _page(request, status=400, badge_form=form)
    if submit:
        messages.success(
            request, _("Thank you. Your application is with our team; we usually decide within 2 working days.")
        )
    else:
        messages.success(request, _("Draft saved."))
    return redirect("verification")


@require_POST
@member_required(manage=True)
def notice_dismiss_view(request: HttpRequest, notice_id: int) -> HttpResponse:
    notice_dismiss(business=request.tenant, actor=request.user, notice_id=notice_id)  # type: ignore[attr-defined,arg-type]
    return redirect("verification")


# What the outbox can be filtered by: an E.164 number, as the SMS rows store it.
OUTBOX_FILTER = re.compile(r"\+?[0-9]{1,19}")


def outbox(request: HttpRequest) -> HttpResponse:
    """Development outbox: the texts the `outbox` SMS backend "sent". Staff only, or anyone
    while DEBUG is on; everyone else gets a plain 404, as if the page did not exist."""
    if not (settings.DEBUG or (request.user.is_authenticated and request.user.is_staff)):
        raise Http404
    to = request.GET.get("to", "").strip()
    if to and not OUTBOX_FILTER.fullmatch(to):
        # A filter that can never match a stored number (e.g. with a NUL, which PostgreSQL
        # refuses outright) is the caller's mistake: say so instead of failing the query.
        return render(
            request,
            "verification/outbox.html",
            {
                "sms_messages": [],
                "to": "",
                "to_error": _("Filter by a phone number in international format, e.g. +4915123456789."),
                "backend": settings.PARLEY_SMS_BACKEND,
            },
            status=400,
        )
    return render(
        request,
        "verification/outbox.html",
        {"sms_messages": selectors.outbox_recent(to=to), "to": to, "backend": settings.PARLEY_SMS_BACKEND},
    )
