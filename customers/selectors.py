from __future__ import annotations

from customers.models import Block, MarketingMute


def customer_has_blocked(*, customer_id: int, business_id: int) -> bool:
    return Block.objects.filter(customer_id=customer_id, business_id=business_id).exists()


def customer_has_muted_marketing(*, customer_id: int, business_id: int) -> bool:
    return MarketingMute.objects.filter(customer_id=customer_id, business_id=business_id).exists()
