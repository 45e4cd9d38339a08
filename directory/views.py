from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def me_conversations(request: HttpRequest) -> HttpResponse:
    """The signed-in customer's conversations with every business (an htmx fragment on /me/)."""
    return render(request, "directory/me_conversations.html", {"threads": []})
