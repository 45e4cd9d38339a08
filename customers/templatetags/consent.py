"""`{% marketing_allowed business customer as allowed %}`: whether the customer currently lets the
business send marketing, for pages (the chat page) whose views belong to another app."""

from __future__ import annotations

from django import template

from accounts.models import Customer
from customers.selectors import consent_allows_send
from tenancy.models import Business

register = template.Library()


@register.simple_tag
def marketing_allowed(business: Business, customer: Customer) -> bool:
    return consent_allows_send(customer_id=customer.pk, business_id=business.pk, category="marketing")
