from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership
from tenancy.models import PUBLIC_SCHEMA, Business, Domain
from tenancy.services import business_reactivate, business_suspend


class DomainInline(admin.TabularInline[Domain, Business]):
    model = Domain
    extra = 0


class MembershipInline(admin.TabularInline[Membership, Business]):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["added_by"]


@admin.register(Business)
class BusinessAdmin(admin.ModelAdmin[Business]):
    list_display = ["display_name", "slug", "status", "conversation_retention_days", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["name", "display_name", "slug", "domains__domain"]
    readonly_fields = ["schema_name", "slug", "created_at", "updated_at"]
    inlines = [DomainInline, MembershipInline]
    actions = ["suspend", "reactivate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Business]:
        return super().get_queryset(request).exclude(schema_name=PUBLIC_SCHEMA)

    def has_delete_permission(self, request: HttpRequest, obj: Business | None = None) -> bool:
        # Deleting a business drops a schema of customer data; that is not a one-click action.
        return False

    @admin.action(description=_("Suspend selected businesses"))
    def suspend(self, request: HttpRequest, queryset: QuerySet[Business]) -> None:
        for business in queryset:
            business_suspend(business=business, actor=request.user, reason="Suspended by staff")  # type: ignore[arg-type]
        self.message_user(request, _("%(n)d business(es) suspended.") % {"n": queryset.count()}, messages.SUCCESS)

    @admin.action(description=_("Reactivate selected businesses"))
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Business]) -> None:
        for business in queryset:
            business_reactivate(business=business, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, _("%(n)d business(es) reactivated.") % {"n": queryset.count()}, messages.SUCCESS)
