"""Staff decisions on templates. A decision is stored on the public review row and applied to
the business's template inside its schema, but only to the revision that was reviewed: an edit
made while staff looked at the old text sends the new text back to review."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from audit.services import audit_record
from template_reviews.models import TemplateReview
from tenancy.models import Business


def template_review_submit(*, business: Business, template: Any) -> TemplateReview:
    """Queue a template revision for staff (older pending revisions of it are superseded).
    Called by notifications.services inside its transaction."""
    TemplateReview.objects.filter(
        business=business, template_id=template.pk, status=TemplateReview.Status.PENDING
    ).update(status=TemplateReview.Status.SUPERSEDED)
    return TemplateReview.objects.create(
        business=business,
        template_id=template.pk,
        revision=template.revision,
        name=template.name,
        language=template.language,
        category=template.category,
        header=template.header,
        body=template.body,
        footer=template.footer,
        buttons=list(template.buttons),
    )


def _decide(*, review: TemplateReview, reviewer: Any, approve: bool, reason: str) -> TemplateReview:
    from notifications.models import Template
    from notifications.services import template_status_changed

    reason = reason.strip()[:500]
    if not approve and not reason:
        raise ValidationError(_("Please give a reason; the business will read it."))
    with transaction.atomic():
        review = TemplateReview.objects.select_for_update().select_related("business").get(pk=review.pk)
        if review.status != TemplateReview.Status.PENDING:
            raise ValidationError(_("This revision was already decided or replaced by a newer one."))
        business = review.business
        with schema_context(business.schema_name):
            template = Template.objects.select_for_update().filter(pk=review.template_id).first()
            if template is None or template.revision != review.revision:
                review.status = TemplateReview.Status.SUPERSEDED
                review.save(update_fields=["status"])
                raise ValidationError(_("The business changed or deleted this template; review the newer revision."))
            template.status = Template.Status.APPROVED if approve else Template.Status.REJECTED
            template.rejection_reason = "" if approve else reason
            template.save(update_fields=["status", "rejection_reason", "updated_at"])
            template_status_changed(business=business, template=template)
        review.status = TemplateReview.Status.APPROVED if approve else TemplateReview.Status.REJECTED
        review.reason = reason
        review.reviewed_by = reviewer
        review.reviewed_at = timezone.now()
        review.save(update_fields=["status", "reason", "reviewed_by", "reviewed_at"])
        audit_record(
            action="template.approve" if approve else "template.reject",
            actor=reviewer,
            business=business,
            target=f"{review.name} ({review.language}) r{review.revision}",
            data={"template_id": review.template_id, "reason": reason},
        )
    return review


def template_review_approve(*, review: TemplateReview, reviewer: Any, reason: str = "") -> TemplateReview:
    return _decide(review=review, reviewer=reviewer, approve=True, reason=reason)


def template_review_reject(*, review: TemplateReview, reviewer: Any, reason: str) -> TemplateReview:
    return _decide(review=review, reviewer=reviewer, approve=False, reason=reason)


def template_notice_dismiss(*, business: Business, review_id: int) -> None:
    TemplateReview.objects.filter(business=business, pk=review_id).update(notice_dismissed=True)
