from __future__ import annotations

from allauth.account.utils import perform_login
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.forms import ProfileForm, SeatAddForm
from accounts.models import Membership, User
from accounts.selectors import mailbox_recent, person_named, seat_invitation_of, seat_of_business, seats_of_business
from accounts.services import seat_add, seat_invitation_accept, seat_remove, user_display_name_set
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
    seats = seats_of_business(business=business)
    return render(request, "accounts/team.html", {"section": "team", "form": form, "seats": seats})


@require_POST
@member_required(manage=True)
def seat_remove_view(request: HttpRequest, membership_id: int) -> HttpResponse:
    business = request.tenant  # type: ignore[attr-defined]
    membership = seat_of_business(business=business, membership_id=membership_id)
    try:
        seat_remove(membership=membership, actor=request.user)  # type: ignore[arg-type]
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The seat was removed."))
    return redirect("team")


def join(request: HttpRequest, key: str) -> HttpResponse:
    """Where a team invitation's link leads (on the business's host): "Join <business>", set a
    password, and arrive signed in on the business's dashboard."""
    business = request.tenant  # type: ignore[attr-defined]
    membership = seat_invitation_of(business=business, key=key)
    if membership is None:
        return _join_refused(request)
    form = SetPasswordForm(membership.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = seat_invitation_accept(business=business, key=key, password=form.cleaned_data["new_password1"])
        except ValidationError as error:
            if error.code == "invalid_link":
                return _join_refused(request)
            form.add_error("new_password1", error)
        else:
            return _sign_in_after_joining(request, membership)
    context = {
        "form": form,
        "membership": membership,
        "business": business,
        "inviter": person_named(membership.added_by),
    }
    return render(request, "accounts/join.html", context)


def _join_refused(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/join_invalid.html", {"business": request.tenant}, status=400)  # type: ignore[attr-defined]


def _sign_in_after_joining(request: HttpRequest, membership: Membership) -> HttpResponse:
    user = membership.user
    if request.user.is_authenticated and request.user.pk != user.pk:
        logout(request)  # someone else's session in this browser does not carry over
    if is_mfa_enabled(user):
        # A password alone never signs in an account with a second factor: log in as usual.
        messages.success(request, _("Your password is set. Log in with it and your second factor."))
        return redirect(f"{reverse('account_login')}?next={reverse('dashboard')}")
    # allauth's login (its stages, signals and session handling), straight to the dashboard.
    return perform_login(request, user, email=user.email, redirect_url=reverse("dashboard"))


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    """Each person's own settings: the display name customers see on their replies."""
    user: User = request.user  # type: ignore[assignment]
    form = ProfileForm(request.POST or None, initial={"full_name": user.full_name})
    if request.method == "POST" and form.is_valid():
        try:
            user_display_name_set(user=user, full_name=form.cleaned_data["full_name"])
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, _("Your display name is saved."))
            return redirect("account_profile")
    return render(request, "accounts/profile.html", {"form": form})


def dev_mailbox_open(request: HttpRequest) -> bool:
    """The mailbox is a development tool: anyone while DEBUG is on, otherwise staff only."""
    return settings.DEBUG or (request.user.is_authenticated and request.user.is_staff)


def mailbox(request: HttpRequest) -> HttpResponse:
    """Development mailbox: the mails the `MailboxBackend` stored, newest first, links clickable.
    Everyone else gets a plain 404, as if the page did not exist (like /dev/outbox/)."""
    if not dev_mailbox_open(request):
        raise Http404
    to = request.GET.get("to", "").replace("\x00", "").strip()[:254]
    return render(
        request,
        "accounts/mailbox.html",
        {"mails": mailbox_recent(to=to), "to": to, "backend": settings.EMAIL_BACKEND},
    )
