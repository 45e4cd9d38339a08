"""The staff review queue for every business's templates: approve, or reject with a reason."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from template_reviews.models import SendingLimits, TemplateReview
from template_reviews.services import template_review_approve, template_review_reject


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (sent to the business)"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
    )


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
class TemplateReviewAdmin(admin.ModelAdmin[TemplateReview]):
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

    def _decision(
        self,
        request: HttpRequest,
        queryset: QuerySet[TemplateReview],
        *,
        action: str,
        title: str,
        decide: Callable[..., TemplateReview],
        reason_required: bool,
    ) -> HttpResponse | None:
        if "confirm" in request.POST:
            form = ReasonForm(request.POST)
            if form.is_valid() and (form.cleaned_data["reason"].strip() or not reason_required):
                done, failed = 0, []
                for review in queryset:
                    try:
                        decide(review=review, reviewer=request.user, reason=form.cleaned_data["reason"])
                        done += 1
                    except ValidationError as error:
                        failed.append(f"{review}: {' '.join(error.messages)}")
                if done:
                    self.message_user(
                        request, _("%(n)d template(s): %(what)s.") % {"n": done, "what": title}, messages.SUCCESS
                    )
                for line in failed:
                    self.message_user(request, line, messages.ERROR)
                return None
            if form.is_valid():
                form.add_error("reason", _("Please give a reason; the business will read it."))
        else:
            form = ReasonForm()
        return TemplateResponse(
            request,
            "template_reviews/admin_decision.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "reviews": queryset,
                "form": form,
                "action": action,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
                "reason_required": reason_required,
            },
        )

    @admin.action(description=_("Approve selected templates"))
    def approve(self, request: HttpRequest, queryset: QuerySet[TemplateReview]) -> HttpResponse | None:
        return self._decision(
            request,
            queryset,
            action="approve",
            title=str(_("Approve")),
            decide=template_review_approve,
            reason_required=False,
        )

    @admin.action(description=_("Reject selected templates"))
    def reject(self, request: HttpRequest, queryset: QuerySet[TemplateReview]) -> HttpResponse | None:
        return self._decision(
            request,
            queryset,
            action="reject",
            title=str(_("Reject")),
            decide=template_review_reject,
            reason_required=True,
        )


@admin.register(SendingLimits)
class SendingLimitsAdmin(admin.ModelAdmin[SendingLimits]):
    list_display = ["business", "messages_per_second", "tier_override", "updated_at"]
    search_fields = ["business__display_name", "business__slug"]
    autocomplete_fields = ["business"]
