"""A customer's sign-in lives in the shared session (cookie on the parent domain), so it holds on
the public site, on every business's chat page and on the chat websocket alike.

Customers are not `User`s: they sign in with a phone number and a one-time code only.
"""

from __future__ import annotations

from typing import Any

from accounts.models import Customer

SESSION_KEY = "parley_customer_id"


def customer_login(session: Any, customer: Customer) -> None:
    # A new identity gets a new session key, against session fixation.
    if hasattr(session, "cycle_key"):
        session.cycle_key()
    session[SESSION_KEY] = customer.pk


def customer_logout(session: Any) -> None:
    from messaging.revocation import rights_revoke_customer  # messaging imports this module

    customer_id = customer_id_from_session(session)
    session.pop(SESSION_KEY, None)
    if customer_id is not None:
        # Open chat and /me/ sockets of this session close; others of the customer re-check.
        rights_revoke_customer(customer_id=customer_id, session_key=getattr(session, "session_key", None))


def customer_id_from_session(session: Any) -> int | None:
    value = session.get(SESSION_KEY) if session is not None else None
    return int(value) if value is not None else None


def customer_from_session(session: Any) -> Customer | None:
    """Synchronous: call from a view, or inside database_sync_to_async in a consumer."""
    customer_id = customer_id_from_session(session)
    if customer_id is None:
        return None
    # An account being deleted has its number replaced at once ("erased:<id>"): every session
    # of it stops working from that moment, before the erasure jobs have run.
    return Customer.objects.filter(pk=customer_id).exclude(phone_number__startswith="erased:").first()
