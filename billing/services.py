"""Billing use cases.

Contract used by messaging (the billing issue fills these in; messaging calls them on every
business-to-customer send, inside the send's transaction):
- `business_may_initiate(business=...)`: False while a failed payment's grace period has run out.
- `conversation_charge_for_message(...)`: opens (or finds) the billable conversation for this
  message and returns its usage record, or None when the message is not billable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tenancy.models import Business

CATEGORIES = ("service", "utility", "marketing", "authentication")


def business_may_initiate(*, business: Business) -> bool:
    return True


def conversation_charge_for_message(
    *,
    business: Business,
    conversation_id: int,
    customer_id: int,
    customer_phone: str,
    category: str,
    sent_at: datetime,
) -> Any:
    return None
