"""Staff review of badge applications: approve, reject or revoke, each with a reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _

from tenancy.admin_decisions import DecisionAdminMixin
from verification.models import BadgeApplication, BusinessNotice, PhoneChallenge, SmsMessage
from verification.phone import phone_display
from verification.selectors import badge_requirements, profile_checklist
from verification.services import badge_application_approve, badge_application_reject, badge_revoke

# action -> (button title, service, whether a reason is required)
DECISIONS: dict[str, tuple[Any, Callable[..., BadgeApplication], bool]] = {
    "approve": (_("Approve"), badge_application_approve, False),
    "reject": (_("Reject"), badge_application_reject, True),
    "revoke": (_("Revoke"), badge_revoke, True),
}
# Which decisions the detail page offers for an application in each status.
DECISIONS_BY_STATUS: dict[str, tuple[str, ...]] = {
    BadgeApplication.Status.SUBMITTED: ("approve", "reject"),
    BadgeApplication.Status.APPROVED: ("revoke",),
}

REVIEW_FIELDS = (
    "business",
    "business_checks",
    "status",
    "website",
    "press_link_html",
    "registration_number",
    "created_by",
    "created_at",
    "submitted_by",
    "submitted_at",
    "returned_at",
    "returned_reason",
    "reviewed_by",
    "reviewed_at",
    "decision_reason",
)


@admin.register(BadgeApplication)
class BadgeApplicationAdmin(DecisionAdminMixin, admin.ModelAdmin[BadgeApplication]):
    decision_template = "verification/admin_decision.html"
    decision_target = "application"
    decision_done = _("%(n)d application(s): %(what)s.")

    def decision_label(self, obj: BadgeApplication) -> str:
        return str(obj.business)

    list_display = ["business", "status", "submitted_at", "returned_at", "reviewed_by", "reviewed_at"]
    list_filter = ["status", "submitted_at", "reviewed_at"]
    search_fields = ["business__display_name", "business__slug", "registration_number"]
    list_select_related = ["business", "reviewed_by"]
    actions = ["approve", "reject", "revoke"]
    readonly_fields = REVIEW_FIELDS
    fields = REVIEW_FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # businesses apply from their dashboard

    def has_delete_permission(self, request: HttpRequest, obj: BadgeApplication | None = None) -> bool:
        return False  # decisions are history

    @admin.display(description=_("Press links"))
    def press_link_html(self, obj: BadgeApplication) -> str:
        return format_html_join(
            "",
            '<a href="{}" rel="noopener noreferrer" target="_blank">{}</a><br>',
            ((u, u) for u in obj.press_link_list),
        )

    @admin.display(description=_("Business today"))
    def business_checks(self, obj: BadgeApplication) -> str:
        business = obj.business
        rows: list[tuple[object, str]] = [
            (_("Display name"), business.display_name or "✗"),
            (_("Phone number"), phone_display(business.phone_number) if business.phone_number else "—"),
        ]
        # The display name is shown above, with its value; the rest of the profile as checks.
        rows += [
            (c.label, "✓" if c.done else "✗") for c in profile_checklist(business=business) if c.key != "display_name"
        ]
        if obj.submitted_by:
            # Staff read this, so the requirements are worded about the applicant, not "your account".
            staff_labels = {
                "owner": _("Applicant is an owner of the business (%(email)s)") % {"email": obj.submitted_by.email},
                "totp": _("Applicant has two-factor authentication (authenticator app) on"),
            }
            rows += [
                (staff_labels[c.key], "✓" if c.done else "✗")
                for c in badge_requirements(business=business, user=obj.submitted_by)
                if c.key in staff_labels
            ]
        return format_html_join("", "{}: {}<br>", ((str(k), str(v)) for k, v in rows))

    # The detail page is for reading the evidence and deciding: nothing on it is edited by hand,
    # so it has no Save buttons, only the decisions that fit the application's status.
    change_form_template = "verification/admin_badgeapplication_change.html"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        application = self.get_object(request, object_id)
        decisions = [
            (action, DECISIONS[action][0])
            for action in (DECISIONS_BY_STATUS.get(application.status, ()) if application else ())
        ]
        context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            "decisions": decisions,
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    def get_urls(self) -> list[URLPattern]:
        decide = path(
            "<int:pk>/decide/<str:action>/",
            self.admin_site.admin_view(self.decide_view),
            name="verification_badgeapplication_decide",
        )
        return [decide, *super().get_urls()]

    def decide_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        """One application's decision, from its detail page: asks for the reason, then decides."""
        if action not in DECISIONS:
            raise Http404
        if not self.has_change_permission(request):
            raise PermissionDenied
        queryset = self.get_queryset(request).filter(pk=pk)
        if not queryset.exists():
            raise Http404
        change_url = reverse("admin:verification_badgeapplication_change", args=[pk])
        return self._action(request, queryset, action, cancel_url=change_url) or redirect(change_url)

    def _action(
        self, request: HttpRequest, queryset: QuerySet[BadgeApplication], action: str, *, cancel_url: str = ""
    ) -> HttpResponse | None:
        title, decide, reason_required = DECISIONS[action]
        return self.decision(
            request,
            queryset,
            action=action,
            title=str(title),
            decide=decide,
            reason_required=reason_required,
            cancel_url=cancel_url or reverse("admin:verification_badgeapplication_changelist"),
        )

    @admin.action(description=_("Approve selected applications"))
    def approve(self, request: HttpRequest, queryset: QuerySet[BadgeApplication]) -> HttpResponse | None:
        return self._action(request, queryset, "approve")

    @admin.action(description=_("Reject selected applications"))
    def reject(self, request: HttpRequest, queryset: QuerySet[BadgeApplication]) -> HttpResponse | None:
        return self._action(request, queryset, "reject")

    @admin.action(description=_("Revoke the badge of selected businesses"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[BadgeApplication]) -> HttpResponse | None:
        return self._action(request, queryset, "revoke")


@admin.register(PhoneChallenge)
class PhoneChallengeAdmin(admin.ModelAdmin[PhoneChallenge]):
    """Read-only: for support ("did the code go out?"). It holds no codes, only their hashes."""

    list_display = [
        "phone_number",
        "purpose",
        "subject",
        "created_at",
        "expires_at",
        "checks",
        "used_at",
        "superseded_at",
    ]
    list_filter = ["purpose", "created_at"]
    search_fields = ["phone_number", "subject"]
    exclude = ["salt", "code_hash"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PhoneChallenge | None = None) -> bool:
        return False

    # The rows are the rate limit's memory: deleting one would reset a number's send limit.
    def has_delete_permission(self, request: HttpRequest, obj: PhoneChallenge | None = None) -> bool:
        return False


@admin.register(SmsMessage)
class SmsMessageAdmin(admin.ModelAdmin[SmsMessage]):
    list_display = ["created_at", "to", "body"]
    search_fields = ["to"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SmsMessage | None = None) -> bool:
        return False


@admin.register(BusinessNotice)
class BusinessNoticeAdmin(admin.ModelAdmin[BusinessNotice]):
    list_display = ["business", "title", "level", "created_at", "dismissed_at"]
    list_filter = ["level"]
    search_fields = ["business__slug", "title"]
    list_select_related = ["business"]
