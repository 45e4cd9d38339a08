from __future__ import annotations

import mimetypes

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render

from tenancy.access import member_required
from tenancy.forms import BusinessCreateForm
from tenancy.models import Business
from tenancy.notices import dashboard_notices
from tenancy.sections import SECTIONS, live_figures, section_figures
from tenancy.selectors import businesses_for_user, logo_is_current
from tenancy.services import business_create


def business_logo(request: HttpRequest, schema: str, filename: str) -> FileResponse:
    """A business's current logo, for anyone: customers see it in the directory, their list of
    conversations and the chat page. Only a file that is some business's logo right now is
    served (not any file under MEDIA_ROOT, not a replaced logo); its name is random and changes
    with every upload, so browsers may keep it."""
    name = f"logos/{schema}/{filename}"
    # The profile form took only raster images (verification.forms checks each file's
    # signature): a current logo's name says which. Never SVG, which can carry script.
    content_type = mimetypes.guess_type(filename)[0] or ""
    raster = content_type.startswith("image/") and content_type != "image/svg+xml"
    if not raster or not logo_is_current(schema=schema, name=name):
        raise Http404
    storage = Business._meta.get_field("logo").storage  # type: ignore[attr-defined]
    try:
        handle = storage.open(name, "rb")
    except FileNotFoundError as missing:
        raise Http404 from missing
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a user lands after logging in: their business, or the list if they have several."""
    businesses = list(businesses_for_user(user=request.user))  # type: ignore[arg-type]
    if len(businesses) == 1:
        return HttpResponseRedirect(businesses[0].absolute_url("/"))
    return render(request, "public/home.html", {"businesses": businesses})


@login_required
def business_create_view(request: HttpRequest) -> HttpResponse:
    form = BusinessCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            business = business_create(
                owner=request.user,  # type: ignore[arg-type]
                name=form.cleaned_data["name"],
                slug=form.cleaned_data["slug"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return HttpResponseRedirect(business.absolute_url("/"))
    return render(request, "public/business_create.html", {"form": form})


@member_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    # Decisions about the badge are news for whoever runs the business, not for agents.
    notices = dashboard_notices(business=request.tenant) if membership.can_manage else []  # type: ignore[attr-defined]
    sections = [s for s in SECTIONS if membership.can_manage or not s.manage_only]
    cards = [(s, section_figures(s, business=request.tenant, user=request.user)) for s in sections]  # type: ignore[attr-defined]
    live = live_figures(business=request.tenant, user=request.user, membership=membership)  # type: ignore[attr-defined]
    return render(request, "dashboard/home.html", {"section": "home", "notices": notices, "cards": cards, "live": live})


@member_required()
def dashboard_live(request: HttpRequest) -> HttpResponse:
    """The Overview's live strip alone: the page swaps it in every 30 seconds (htmx)."""
    live = live_figures(business=request.tenant, user=request.user, membership=request.membership)  # type: ignore[attr-defined]
    return render(request, "dashboard/_live.html", {"live": live})


def tenant_root(request: HttpRequest) -> HttpResponse:
    """A business's bare address: members get the dashboard, everyone else the chat page."""
    if request.user.is_authenticated and getattr(request, "membership", None):
        return dashboard(request)
    return redirect("chat")
