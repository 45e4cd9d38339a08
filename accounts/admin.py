from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _

from accounts.models import Customer, Membership, User


class MembershipInline(admin.TabularInline[Membership, User]):
    model = Membership
    fk_name = "user"
    extra = 0
    autocomplete_fields = ["business"]
    readonly_fields = ["added_by"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "full_name"]
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("full_name",)}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # Users are deactivated, never deleted: business schemas reference them without a
        # database constraint (messaging.models), and a delete here would only see public.
        return False


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ["user", "business", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "business__slug", "business__display_name"]
    autocomplete_fields = ["user", "business"]
    list_select_related = ["user", "business"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin[Customer]):
    list_display = ["phone_number", "display_name", "country_code", "verified_at", "created_at"]
    list_filter = ["country_code"]
    search_fields = ["phone_number", "display_name"]

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # A customer leaves through the privacy centre's account deletion, which erases them
        # from every business schema first (customers.privacy); no constraint guards those rows.
        return False
