"""The staff review queue for every business's templates: approve, or reject with a reason."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from template_reviews.models import SendingLimits, TemplateReview
from template_reviews.services import template_review_approve, template_review_reject
from tenancy.admin_decisions import DecisionAdminMixin

REVIEW_FIELDS = (
    "business",
    "name",
    "language",
    "category",
    "revision",
    "preview",
    "status",
    "reason",
    "submitted_at",
    "reviewed_by",
    "reviewed_at",
)


@admin.register(TemplateReview)
class TemplateReviewAdmin(DecisionAdminMixin, admin.ModelAdmin[TemplateReview]):
    decision_template = "template_reviews/admin_decision.html"
    decision_target = "review"
    decision_done = _("%(n)d template(s): %(what)s.")
    decision_reason_max_length = TemplateReview._meta.get_field("reason").max_length

    list_display = ["name", "language", "category", "business", "revision", "status", "submitted_at", "reviewed_by"]
    list_filter = ["status", "category", "submitted_at"]
    search_fields = ["name", "business__display_name", "business__slug", "body"]
    list_select_related = ["business", "reviewed_by"]
    actions = ["approve", "reject"]
    fields = REVIEW_FIELDS
    readonly_fields = REVIEW_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # businesses submit from their dashboard

    def has_delete_permission(self, request: HttpRequest, obj: TemplateReview | None = None) -> bool:
        return False  # decisions are history

    def has_change_permission(self, request: HttpRequest, obj: TemplateReview | None = None) -> bool:
        return False  # decisions go through the actions, which apply them and audit them

    @admin.display(description=_("Message as the customer sees it"))
    def preview(self, obj: TemplateReview) -> str:
        parts = [format_html("<strong>{}</strong><br>", obj.header) if obj.header else ""]
        parts.append(format_html('<div style="white-space:pre-wrap">{}</div>', obj.body))
        if obj.footer:
            parts.append(format_html('<div style="opacity:.75">{}</div>', obj.footer))
        if obj.buttons:
            parts.append(format_html_join("", "<div>[ {} ]</div>", ((b,) for b in obj.buttons)))
        return format_html('<div style="max-width:40em">{}</div>', format_html_join("", "{}", ((p,) for p in parts)))

    @admin.action(description=_("Approve selected templates"))
    def approve(self, request: HttpRequest, queryset: QuerySet[TemplateReview]) -> HttpResponse | None:
        return self.decision(
            request,
            queryset,
            action="approve",
            title=str(_("Approve")),
            decide=template_review_approve,
            reason_required=False,
            cancel_url=reverse("admin:template_reviews_templatereview_changelist"),
        )

    @admin.action(description=_("Reject selected templates"))
    def reject(self, request: HttpRequest, queryset: QuerySet[TemplateReview]) -> HttpResponse | None:
        return self.decision(
            request,
            queryset,
            action="reject",
            title=str(_("Reject")),
            decide=template_review_reject,
            reason_required=True,
            cancel_url=reverse("admin:template_reviews_templatereview_changelist"),
        )


@admin.register(SendingLimits)
class SendingLimitsAdmin(admin.ModelAdmin[SendingLimits]):
    list_display = ["business", "messages_per_second", "tier_override", "updated_at"]
    search_fields = ["business__display_name", "business__slug"]
    autocomplete_fields = ["business"]
