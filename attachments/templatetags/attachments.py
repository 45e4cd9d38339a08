"""The attachment-retention card on the business's privacy page (one include, its own form)."""

from __future__ import annotations

from typing import Any

from django import template

from attachments.selectors import retention_days

register = template.Library()


@register.inclusion_tag("attachments/retention_card.html", takes_context=True)
def attachment_retention_card(context: Any) -> dict[str, Any]:
    return {"days": retention_days(), "csrf_token": context.get("csrf_token")}
