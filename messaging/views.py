from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenancy.access import member_required
from tenancy.sections import render_empty_section


@member_required()
def inbox(request: HttpRequest) -> HttpResponse:
    return render_empty_section(request, "inbox")


@member_required()
def contacts(request: HttpRequest) -> HttpResponse:
    return render_empty_section(request, "contacts")


@member_required(manage=True)
def templates(request: HttpRequest) -> HttpResponse:
    return render_empty_section(request, "templates")


@member_required(manage=True)
def developers(request: HttpRequest) -> HttpResponse:
    return render_empty_section(request, "api")


def chat(request: HttpRequest) -> HttpResponse:
    """The business's public chat page for customers."""
    return render(request, "messaging/chat.html")
