from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenancy.access import member_required
from tenancy.sections import render_empty_section


@member_required(manage=True)
def billing(request: HttpRequest) -> HttpResponse:
    return render_empty_section(request, "billing")


def pricing(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/pricing.html")
