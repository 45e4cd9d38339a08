from __future__ import annotations

from typing import Any

from notifications import services
from notifications.models import Template
from template_reviews.models import TemplateReview
from template_reviews.services import template_review_approve
from tenancy.models import Business


def template_content(**overrides: Any) -> services.TemplateContent:
    fields: dict[str, Any] = {
        "name": "flight_change",
        "language": "en",
        "category": "utility",
        "header": "Flight {{flight}}",
        "body": "Your flight {{flight}} now leaves at {{time}}.",
        "footer": "Reply STOP to opt out",
        "buttons": ["OK", "Call me"],
    }
    fields.update(overrides)
    return services.template_content_clean(**fields)


def approved_template(business: Business, staff: Any, **overrides: Any) -> Template:
    """A template created and approved (call inside the business's schema)."""
    template = services.template_create(business=business, actor=None, content=template_content(**overrides))
    review = TemplateReview.objects.get(business=business, template_id=template.pk, revision=template.revision)
    template_review_approve(review=review, reviewer=staff)
    template.refresh_from_db()
    return template
