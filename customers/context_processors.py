"""The signed-in customer, for the page header on every host (customers are not `User`s)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from customers.session import customer_from_session, customer_id_from_session


def signed_in_customer(request: HttpRequest) -> dict[str, Any]:
    session = getattr(request, "session", None)
    if customer_id_from_session(session) is None:
        return {"signed_in_customer": None}
    # Looked up only when a page's header shows it.
    return {"signed_in_customer": SimpleLazyObject(lambda: customer_from_session(session))}
