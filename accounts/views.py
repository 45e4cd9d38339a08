from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.forms import SeatAddForm
from accounts.models import Membership
from accounts.services import seat_add, seat_remove
from tenancy.access import member_required


@member_required(manage=True)
def team(request: HttpRequest) -> HttpResponse:
    business = request.tenant  # type: ignore[attr-defined]
    form = SeatAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            seat_add(business=business, actor=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("%(email)s now has a seat.") % {"email": form.cleaned_data["email"]})
            return redirect("team")
    seats = Membership.objects.filter(business=business).select_related("user").order_by("role", "user__email")
    return render(request, "accounts/team.html", {"section": "team", "form": form, "seats": seats})


@require_POST
@member_required(manage=True)
def seat_remove_view(request: HttpRequest, membership_id: int) -> HttpResponse:
    business = request.tenant  # type: ignore[attr-defined]
    membership = get_object_or_404(Membership, pk=membership_id, business=business)
    try:
        seat_remove(membership=membership, actor=request.user)  # type: ignore[arg-type]
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The seat was removed."))
    return redirect("team")
