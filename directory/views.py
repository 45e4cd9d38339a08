from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from config.websocket import client_close_codes, socket_url
from customers.session import customer_from_session
from directory.selectors import DIRECTORY_PAGE, directory_businesses, threads_for_customer


def me_conversations(request: HttpRequest) -> HttpResponse:
    """The signed-in customer's conversations with every business (an htmx fragment on /me/,
    refreshed live by me.js when the customer's websocket says a thread changed)."""
    customer = customer_from_session(request.session)
    threads = threads_for_customer(customer=customer) if customer is not None else []
    me_config = {"close_codes": client_close_codes(), "urls": {"socket": socket_url("ws_me")}}
    context = {"threads": threads, "customer": customer, "me_config": me_config}
    return render(request, "directory/me_conversations.html", context)


def businesses(request: HttpRequest) -> HttpResponse:
    """The public directory: customers find businesses and reach their chat pages."""
    # PostgreSQL text cannot hold NUL: a query with one would fail the request instead of matching nothing.
    query = request.GET.get("q", "").replace("\x00", "").strip()[:100]
    page = Paginator(directory_businesses(query=query), DIRECTORY_PAGE).get_page(request.GET.get("page"))
    return render(request, "directory/businesses.html", {"page": page, "query": query})
