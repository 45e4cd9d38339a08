"""The business's privacy page on its own host (/privacy/): retention policy, proof of consent,
data exports of one contact, and every time platform staff looked at its conversations."""

from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from audit.selectors import audit_events_for_business
from customers import privacy
from customers.models import ConsentRecord
from customers.selectors import (
    consent_ledger_for_business,
    privacy_request_for_business,
    privacy_requests_for_business,
)
from customers.services import consent_record, customer_unblock
from customers.session import customer_from_session
from customers.staff_access import STAFF_ACCESS_ACTION
from tenancy.access import member_required
from tenancy.models import MIN_RETENTION_DAYS


class RetentionForm(forms.Form):
    days = forms.IntegerField(
        label=gettext_lazy("Keep resolved conversations for (days)"),
        min_value=MIN_RETENTION_DAYS,
        max_value=36500,
        help_text=gettext_lazy("At least 30 days. Older resolved conversations are deleted every night."),
    )


@member_required(manage=True)
def privacy_page(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    form = RetentionForm(
        request.POST if request.method == "POST" else None, initial={"days": business.conversation_retention_days}
    )
    if request.method == "POST":
        if form.is_valid():
            privacy.business_retention_set(business=business, user=request.user, days=form.cleaned_data["days"])  # type: ignore[arg-type]
            messages.success(request, _("Retention period saved."))
            return redirect("privacy")
    return render(
        request,
        "customers/business_privacy.html",
        {
            "section": "privacy",
            "form": form,
            "exports": privacy.request_rows(privacy_requests_for_business(business=business)[:20], owner=business),
            "staff_views": audit_events_for_business(business=business, action=STAFF_ACCESS_ACTION)[:50],
            "consent_count": consent_ledger_for_business(business_id=business.pk).count(),
        },
        status=400 if form.errors else 200,
    )


@require_GET
@member_required(manage=True)
def consents_csv(request: HttpRequest) -> HttpResponse:
    """Proof of consent: every opt-in and opt-out this business's customers gave, oldest first."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{business.slug}-consents.csv"'
    writer = csv.writer(response)
    writer.writerow(["time_utc", "phone_number", "category", "choice", "source"])
    for record in consent_ledger_for_business(business_id=business.pk).iterator():
        writer.writerow(
            [
                record.created_at.isoformat(),
                record.customer.phone_number,
                record.category,
                "opt-in" if record.granted else "opt-out",
                record.source,
            ]
        )
    return response


@require_POST
@member_required(manage=True)
def contact_export(request: HttpRequest, contact_id: int) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    try:
        privacy.contact_export_request(business=business, user=request.user, contact_id=contact_id)  # type: ignore[arg-type]
    except ValidationError as error:
        messages.error(request, error.messages[0])
        return redirect("contacts")
    messages.success(request, _("The contact's data export is being prepared below."))
    return redirect("privacy")


@require_GET
@member_required(manage=True)
def privacy_request(request: HttpRequest, request_id: str) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    found = privacy_request_for_business(business=business, request_id=request_id)
    return render(request, "customers/privacy_request.html", {"r": privacy.request_rows([found], owner=business)[0]})


@require_GET
@member_required(manage=True)
def privacy_download(request: HttpRequest, token: str) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    request_id = privacy.download_token_check(token, owner=privacy.download_owner(business))
    if request_id is None:
        messages.error(request, _("This download link has expired. Open the privacy page for a fresh one."))
        return redirect("privacy")
    found = privacy_request_for_business(business=business, request_id=request_id)
    path = privacy.export_path(found)
    if path is None:
        raise Http404
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"{business.slug}-contact-export.zip")  # type: ignore[return-value]


@require_POST
def chat_consent(request: HttpRequest) -> HttpResponse:
    """The signed-in customer opts in or out of this business's marketing on its chat page."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    customer = customer_from_session(request.session)
    if customer is None:
        return redirect("chat")
    consent_record(
        customer=customer,
        business=business,
        category=ConsentRecord.Category.MARKETING,
        granted=request.POST.get("granted") == "1",
        source=ConsentRecord.Source.CHAT,
    )
    if request.POST.get("granted") == "1":
        messages.success(request, _("You receive offers from %(name)s.") % {"name": business.display_name})
    else:
        messages.success(request, _("No more offers from %(name)s.") % {"name": business.display_name})
    return redirect("chat")


@require_POST
def chat_unblock(request: HttpRequest) -> HttpResponse:
    """The signed-in customer unblocks this business from its chat page (as from /me/)."""
    business: Any = request.tenant  # type: ignore[attr-defined]
    customer = customer_from_session(request.session)
    if customer is None:
        return redirect("chat")
    customer_unblock(customer=customer, business=business)
    messages.success(request, _("You unblocked %(name)s.") % {"name": business.display_name})
    return redirect("chat")
