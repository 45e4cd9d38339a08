"""The customer's privacy centre at /me/privacy/ (public host): what each business holds, the
consents given, export, erasure at one business, and deleting the account."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Customer
from customers import privacy
from customers.models import ConsentRecord, PrivacyRequest
from customers.selectors import (
    business_for_customer,
    customer_privacy_rows,
    privacy_request_for_customer,
    privacy_requests_for_customer,
)
from customers.services import consent_record
from customers.session import customer_logout
from customers.views import customer_required
from verification.phone import phone_display


@require_GET
@customer_required
def me_privacy(request: HttpRequest) -> HttpResponse:
    customer: Customer = request.customer  # type: ignore[attr-defined]
    requests = privacy_requests_for_customer(customer=customer)[:10]
    return render(
        request,
        "customers/privacy.html",
        {
            "customer": customer,
            "phone": phone_display(customer.phone_number),
            "rows": customer_privacy_rows(customer=customer),
            "requests": privacy.request_rows(requests, owner=customer),
        },
    )


@require_POST
@customer_required
def me_privacy_consent(request: HttpRequest, business_id: int) -> HttpResponse:
    """Opt in or out of one category of one business's messages."""
    customer: Customer = request.customer  # type: ignore[attr-defined]
    business = business_for_customer(business_id=business_id)
    category = request.POST.get("category", "")
    granted = request.POST.get("granted") == "1"
    if category not in ConsentRecord.Category.values:
        messages.error(request, _("Unknown message category."))
        return redirect("me_privacy")
    consent_record(
        customer=customer, business=business, category=category, granted=granted, source=ConsentRecord.Source.ME
    )
    label = ConsentRecord.Category(category).label
    if granted:
        text = _("You receive %(category)s messages from %(name)s again.")
    else:
        text = _("%(name)s may no longer send you %(category)s messages.")
    messages.success(request, text % {"name": business.display_name, "category": str(label).lower()})
    return redirect("me_privacy")


@require_POST
@customer_required
def me_privacy_export(request: HttpRequest) -> HttpResponse:
    privacy.customer_export_request(customer=request.customer)  # type: ignore[attr-defined]
    messages.success(request, _("Your export is being prepared. This page shows when it is ready."))
    return redirect("me_privacy")


@require_GET
@customer_required
def me_privacy_request(request: HttpRequest, request_id: str) -> HttpResponse:
    """One request's progress: the htmx fragment the page polls until it is done."""
    customer: Customer = request.customer  # type: ignore[attr-defined]
    found = privacy_request_for_customer(customer=customer, request_id=request_id)
    response = render(
        request, "customers/privacy_request.html", {"r": privacy.request_rows([found], owner=customer)[0]}
    )
    if (
        request.headers.get("HX-Request")
        and found.status == PrivacyRequest.Status.DONE
        and found.kind != found.Kind.EXPORT
    ):
        # An erasure just finished: the businesses listed above (and their message counts) have
        # changed, so the whole page is shown again rather than a "Done" beside stale rows.
        response["HX-Refresh"] = "true"
    return response


@require_GET
@customer_required
def me_privacy_download(request: HttpRequest, token: str) -> HttpResponse:
    """The export ZIP, for the customer the signed link was made for, while it is fresh."""
    customer: Customer = request.customer  # type: ignore[attr-defined]
    request_id = privacy.download_token_check(token, owner=privacy.download_owner(customer))
    if request_id is None:
        messages.error(request, _("This download link has expired. Open the privacy page for a fresh one."))
        return redirect("me_privacy")
    found = privacy_request_for_customer(customer=customer, request_id=request_id)
    path = privacy.export_path(found)
    if path is None:
        raise Http404
    return FileResponse(path.open("rb"), as_attachment=True, filename="parley-my-data.zip")  # type: ignore[return-value]


@require_POST
@customer_required
def me_privacy_erase(request: HttpRequest, business_id: int) -> HttpResponse:
    customer: Customer = request.customer  # type: ignore[attr-defined]
    business = business_for_customer(business_id=business_id)
    if request.POST.get("confirm") != "yes":
        messages.error(request, _("Please tick the box to confirm the erasure."))
        return redirect("me_privacy")
    privacy.customer_erasure_request(customer=customer, business=business)
    messages.success(
        request, _("%(name)s's copy of your conversation is being erased.") % {"name": business.display_name}
    )
    return redirect("me_privacy")


@require_POST
@customer_required
def me_privacy_delete(request: HttpRequest) -> HttpResponse:
    customer: Customer = request.customer  # type: ignore[attr-defined]
    if request.POST.get("confirm") != "yes":
        messages.error(request, _("Please tick the box to confirm that you want to delete your account."))
        return redirect("me_privacy")
    privacy.customer_account_delete(customer=customer)
    customer_logout(request.session)
    request.session.cycle_key()
    messages.success(
        request, _("Your account is deleted. Your conversations are being erased from every business now.")
    )
    return redirect("me")
