from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from tenancy.access import member_required
from tenancy.sections import render_empty_section


@member_required(manage=True)
def verification(request: HttpRequest) -> HttpResponse:
    return render_empty_section(request, "verification")
