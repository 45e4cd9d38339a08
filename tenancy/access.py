"""Who may open a business's pages: members only, and some pages only for owners and admins."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

View = Callable[..., HttpResponse]


def _login_redirect(request: HttpRequest) -> HttpResponse:
    next_url = request.build_absolute_uri()
    return HttpResponseRedirect(f"{settings.PARLEY_PUBLIC_URL}/accounts/login/?next={quote(next_url)}")


def member_required(*, manage: bool = False) -> Callable[[View], View]:
    """Require a seat in this business; `manage=True` also requires owner or admin.

    A stranger and a member without the right role both get a 403 page; neither learns more
    about the business than its public chat page shows.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return _login_redirect(request)
            membership = getattr(request, "membership", None)
            if not membership:
                return render(
                    request,
                    "errors/forbidden.html",
                    {"reason": _("You don't have a seat in this business.")},
                    status=403,
                )
            if manage and not membership.can_manage:
                return render(
                    request,
                    "errors/forbidden.html",
                    {"reason": _("Only the business's owners and admins can open this page.")},
                    status=403,
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


class IsMember(BasePermission):
    """member_required for DRF views: a seat in this business (anonymous callers get 401 from
    the view's authentication, members of other businesses this refusal)."""

    message = gettext_lazy("You don't have a seat in this business.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and getattr(request, "membership", None))
