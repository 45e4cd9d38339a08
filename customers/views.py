"""The customer's pages on the public host: sign in at /me/ with a phone number and a code,
then the privacy page (businesses, block, mute marketing, report)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.models import Customer
from customers.forms import ReportForm
from customers.selectors import business_for_customer, customer_business_row, customer_businesses
from customers.services import (
    customer_block,
    customer_mute_marketing,
    customer_report,
    customer_sign_in_confirm,
    customer_sign_in_start,
    customer_unblock,
    customer_unmute_marketing,
)
from customers.session import customer_from_session, customer_login, customer_logout
from verification.forms import CodeForm, PhoneForm, client_ip, outbox_link
from verification.otp import CODE_REJECTED_MESSAGE, OtpRateLimited
from verification.phone import phone_display

PENDING_KEY = "parley_customer_pending_phone"
NEXT_KEY = "parley_customer_next"


def safe_next(url: str | None) -> str | None:
    """An absolute URL on the platform's domain or one of its business subdomains, or a local
    path; anything else (another site, a scheme trick) is dropped."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # "http://[oops": not a URL at all
        return None
    domain = settings.PARLEY_DOMAIN.lower()
    if parts.netloc and not (host == domain or host.endswith("." + domain)):
        return None
    allowed = {parts.netloc} if parts.netloc else set()
    if not url_has_allowed_host_and_scheme(url, allowed_hosts=allowed, require_https=settings.PARLEY_SCHEME == "https"):
        return None
    return url


def _signed_in_redirect(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request.session.pop(NEXT_KEY, None))
    return HttpResponseRedirect(next_url or "/me/")


def customer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        customer = customer_from_session(request.session)
        if customer is None:
            messages.info(request, _("Please sign in with your phone number first."))
            return redirect("me")
        request.customer = customer  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def me(request: HttpRequest) -> HttpResponse:
    """Signed in: the privacy page. Otherwise: step 1 of sign-in, the phone number."""
    next_url = safe_next(request.GET.get("next") or request.POST.get("next"))
    if next_url:
        request.session[NEXT_KEY] = next_url
    customer = customer_from_session(request.session)
    if customer is not None:
        if next_url:
            return _signed_in_redirect(request)
        return _privacy_page(request, customer)

    if request.method != "POST":
        return _sign_in_page(request, PhoneForm())
    form = PhoneForm(request.POST)
    if not form.is_valid():
        return _sign_in_page(request, form, status=400)
    try:
        customer_sign_in_start(phone_number=form.cleaned_data["e164"], ip_address=client_ip(request))
    except OtpRateLimited as error:
        form.add_error(None, error.message)
        return _sign_in_page(request, form, status=429)
    request.session[PENDING_KEY] = form.cleaned_data["e164"]
    return redirect("me_code")


def _sign_in_page(request: HttpRequest, form: PhoneForm, status: int = 200) -> HttpResponse:
    return render(request, "customers/sign_in.html", {"form": form}, status=status)


def me_code(request: HttpRequest) -> HttpResponse:
    """Step 2 of sign-in: the code. The number comes from the session, never from the form."""
    pending = request.session.get(PENDING_KEY)
    if not pending:
        return redirect("me")
    if request.method != "POST":
        return _code_page(request, CodeForm(), pending)
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _code_page(request, form, pending, status=400)
    customer = customer_sign_in_confirm(phone_number=pending, code=form.cleaned_data["code"])
    if customer is None:
        form.add_error("code", str(CODE_REJECTED_MESSAGE))
        return _code_page(request, form, pending, status=400)
    customer_login(request.session, customer)  # a new key; the ?next= stays
    request.session.pop(PENDING_KEY, None)
    messages.success(request, _("You're signed in."))
    return _signed_in_redirect(request)


def _code_page(request: HttpRequest, form: CodeForm, pending: str, status: int = 200) -> HttpResponse:
    return render(
        request,
        "customers/code.html",
        {"form": form, "phone": phone_display(pending), "outbox_url": outbox_link()},
        status=status,
    )


@require_POST
def me_sign_out(request: HttpRequest) -> HttpResponse:
    customer_logout(request.session)
    request.session.pop(PENDING_KEY, None)
    messages.success(request, _("You're signed out."))
    return redirect("me")


def _privacy_page(request: HttpRequest, customer: Customer) -> HttpResponse:
    return render(
        request,
        "customers/me.html",
        {
            "customer": customer,
            "phone": phone_display(customer.phone_number),
            "rows": customer_businesses(customer=customer),
        },
    )


def _action(service: Callable[..., None], done: Any) -> Callable[..., HttpResponse]:
    @require_POST
    @customer_required
    def view(request: HttpRequest, business_id: int) -> HttpResponse:
        business = business_for_customer(business_id=business_id)
        service(customer=request.customer, business=business)  # type: ignore[attr-defined]
        messages.success(request, str(done) % {"name": business.display_name})
        return redirect("me")

    return view


me_block = _action(customer_block, gettext_lazy("You blocked %(name)s. It can no longer message you."))
me_unblock = _action(customer_unblock, gettext_lazy("You unblocked %(name)s."))
me_mute = _action(
    customer_mute_marketing, gettext_lazy("Marketing from %(name)s is muted. Service messages still arrive.")
)
me_unmute = _action(customer_unmute_marketing, gettext_lazy("Marketing from %(name)s is no longer muted."))


@customer_required
def me_report(request: HttpRequest, business_id: int) -> HttpResponse:
    customer: Customer = request.customer  # type: ignore[attr-defined]
    # Only businesses on the customer's privacy page can be reported; anything else is a 404.
    row = customer_business_row(customer=customer, business_id=business_id)
    form = ReportForm(request.POST if request.method == "POST" else None, initial={"block": not row.blocked})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                customer_report(
                    customer=customer,
                    business=row.business,
                    reason=form.cleaned_data["reason"],
                    details=form.cleaned_data["details"],
                    block=form.cleaned_data["block"],
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, _("Thank you. Our team will look at your report."))
                return redirect("me")
        status = 400
    return render(request, "customers/report.html", {"form": form, "row": row}, status=status)
