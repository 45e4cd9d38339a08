"""Assignment's pages: the settings page on the business dashboard, and the customer's place in
line (polled by the chat page; pushed live as `queue` frames too)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from assignment import selectors, services
from assignment.forms import AssignmentSettingsForm
from customers.session import customer_from_session
from messaging.errors import MessagingError
from messaging.selectors import conversation_for_customer
from tenancy.access import member_required


@member_required(manage=True)
def settings_page(request: HttpRequest) -> HttpResponse:
    business: Any = request.tenant  # type: ignore[attr-defined]
    current = selectors.assignment_settings()
    form = AssignmentSettingsForm(request.POST or None, instance=current)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.assignment_settings_update(
                    business=business,
                    user=request.user,  # type: ignore[arg-type]
                    values=form.values(),
                )
            except MessagingError as error:
                flash.error(request, error.message)
            else:
                flash.success(request, _("Assignment settings saved."))
                return redirect("assignment_settings")
        status = 400
    context = {
        "section": "assignment",
        "form": form,
        "team": selectors.team_availability(business=business),
        "queue_length": selectors.queue_length(),
    }
    return render(request, "assignment/settings.html", context, status=status)


@require_GET
def chat_queue(request: HttpRequest) -> HttpResponse:
    """The signed-in customer's place in line, estimate, and whether the business is closed."""
    customer = customer_from_session(request.session)
    if customer is None:
        return JsonResponse({"error": {"code": "unauthenticated", "message": _("Please sign in.")}}, status=401)
    conversation = conversation_for_customer(customer=customer)
    return JsonResponse(selectors.customer_queue_state(conversation=conversation))
