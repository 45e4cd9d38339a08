"""The platform admin only for staff with two-factor authentication: staff grant the green badge
and can suspend any business, so a password alone does not open it. A staff member without an
authenticator app is sent to set one up (allauth's own page) and told why; with it on, the admin
opens as before (allauth's login asks for the code)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from allauth.mfa.models import Authenticator
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _


def needs_two_factor(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_authenticated and user.is_staff and not is_mfa_enabled(user, types=[Authenticator.Type.TOTP]))


def two_factor_setup_redirect(request: HttpRequest) -> HttpResponse:
    messages.warning(request, _("Platform staff need two-factor authentication to open the admin. Turn it on here."))
    return HttpResponseRedirect(reverse("mfa_activate_totp"))


def require_two_factor(site: admin.AdminSite) -> None:
    """Every admin view of `site` (its URLs are built through `admin_view`, so call this before
    they are) and its login refuse staff without an authenticator app."""
    wrap_admin_view = site.admin_view

    def admin_view(view: Callable[..., Any], cacheable: bool = False) -> Callable[..., Any]:
        wrapped = wrap_admin_view(view, cacheable)

        @wraps(wrapped)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if needs_two_factor(request):
                return two_factor_setup_redirect(request)
            return wrapped(request, *args, **kwargs)

        return checked

    login = site.login

    def checked_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if needs_two_factor(request):
            return two_factor_setup_redirect(request)
        return login(request, extra_context)

    site.admin_view = admin_view  # type: ignore[method-assign,assignment]
    site.login = checked_login  # type: ignore[method-assign]
