"""Staff see what customers decided about businesses, and the reports per business."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from customers.models import Block, BusinessContact, MarketingMute, Report, ReportedBusiness
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
