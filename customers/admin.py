"""Staff see what customers decided about businesses, and the reports per business."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from customers.models import (
    Block,
    BusinessContact,
    BusinessConversations,
    ConsentRecord,
    MarketingMute,
    PrivacyRequest,
    Report,
    ReportedBusiness,
)
from customers.staff_access import staff_conversation_view, staff_conversations_view
from tenancy.models import PUBLIC_SCHEMA


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin[Report]):
    list_display = ["created_at", "business", "reason", "status", "also_blocked", "customer"]
    list_filter = ["status", "reason", "created_at", "business"]
    search_fields = ["business__display_name", "business__slug", "details", "customer__phone_number"]
    list_select_related = ["business", "customer"]
    readonly_fields = ["customer", "business", "reason", "details", "also_blocked", "created_at"]
    fields = [*readonly_fields, "status"]
    actions = ["mark_reviewed"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=_("Mark selected reports as reviewed"))
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        count = queryset.update(status=Report.Status.REVIEWED)
        message = ngettext("%(n)d report marked as reviewed.", "%(n)d reports marked as reviewed.", count)
        self.message_user(request, message % {"n": count}, messages.SUCCESS)


@admin.register(ReportedBusiness)
class ReportedBusinessAdmin(admin.ModelAdmin[ReportedBusiness]):
    """One row per business with reports: how many, how many still open, the latest."""

    list_display = ["display_name", "slug", "report_count", "open_count", "last_report", "badge_status", "status"]
    search_fields = ["display_name", "slug"]
    list_filter = ["badge_status", "status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportedBusiness]:
        return (
            super()
            .get_queryset(request)
            .exclude(schema_name=PUBLIC_SCHEMA)
            .annotate(
                n_reports=Count("reports"),
                n_open=Count("reports", filter=Q(reports__status=Report.Status.OPEN)),
                last_report_at=Max("reports__created_at"),
            )
            .filter(n_reports__gt=0)
            .order_by("-n_open", "-last_report_at")
        )

    @admin.display(description=_("reports"), ordering="n_reports")
    def report_count(self, obj: ReportedBusiness) -> str:
        url = reverse("admin:customers_report_changelist") + f"?business__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.n_reports)  # type: ignore[attr-defined]

    @admin.display(description=_("open"), ordering="n_open")
    def open_count(self, obj: ReportedBusiness) -> int:
        return obj.n_open  # type: ignore[attr-defined,no-any-return]

    @admin.display(description=_("latest report"), ordering="last_report_at")
    def last_report(self, obj: ReportedBusiness) -> object:
        return obj.last_report_at  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ReportedBusiness | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ReportedBusiness | None = None) -> bool:
        return False


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin[Block]):
    list_display = ["created_at", "business", "customer"]
    search_fields = ["business__slug", "customer__phone_number"]
    list_select_related = ["business", "customer"]


@admin.register(MarketingMute)
class MarketingMuteAdmin(admin.ModelAdmin[MarketingMute]):
    list_display = ["created_at", "business", "customer"]
    search_fields = ["business__slug", "customer__phone_number"]
    list_select_related = ["business", "customer"]


@admin.register(BusinessContact)
class BusinessContactAdmin(admin.ModelAdmin[BusinessContact]):
    list_display = ["business", "customer", "first_contact_at", "last_contact_at"]
    search_fields = ["business__slug", "customer__phone_number"]
    list_select_related = ["business", "customer"]


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin[ConsentRecord]):
    list_display = ["created_at", "business", "customer", "category", "granted", "source"]
    list_filter = ["category", "granted", "source"]
    search_fields = ["business__slug", "customer__phone_number"]
    list_select_related = ["business", "customer"]
    readonly_fields = ["created_at", "business", "customer", "category", "granted", "source"]

    # The ledger is the businesses' proof: nobody adds, edits or deletes rows by hand.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ConsentRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ConsentRecord | None = None) -> bool:
        return False


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin[PrivacyRequest]):
    list_display = ["created_at", "kind", "requested_by", "business", "status", "progress", "finished_at"]
    list_filter = ["kind", "status", "requested_by"]
    readonly_fields = [f.name for f in PrivacyRequest._meta.fields] + ["schemas", "done_schemas"]

    @admin.display(description=_("progress"))
    def progress(self, obj: PrivacyRequest) -> str:
        return f"{len(obj.done_schemas)}/{len(obj.schemas)}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PrivacyRequest | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PrivacyRequest | None = None) -> bool:
        return False


@admin.register(BusinessConversations)
class BusinessConversationsAdmin(admin.ModelAdmin[BusinessConversations]):
    """Businesses with their retention policy; opening one lists its conversations, and that
    look (like opening a conversation) is written to the audit log the owner sees."""

    list_display = ["display_name", "slug", "retention", "status"]
    search_fields = ["display_name", "slug"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BusinessConversations]:
        return super().get_queryset(request).exclude(schema_name=PUBLIC_SCHEMA)

    @admin.display(description=_("keeps resolved conversations"), ordering="conversation_retention_days")
    def retention(self, obj: BusinessConversations) -> str:
        return ngettext("%(n)d day", "%(n)d days", obj.conversation_retention_days) % {
            "n": obj.conversation_retention_days
        }

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:business_id>/conversations/", view(staff_conversations_view), name="privacy_staff_conversations"
            ),
            path(
                "<int:business_id>/conversations/<int:conversation_id>/",
                view(staff_conversation_view),
                name="privacy_staff_conversation",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        return redirect("admin:privacy_staff_conversations", business_id=object_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BusinessConversations | None = None) -> bool:
        return False
