from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    list_display = ["created_at", "action", "actor", "business", "target"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "target", "actor__email", "business__slug"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at", "actor", "business", "action", "target", "data"]
    list_select_related = ["actor", "business"]

    # The audit log is evidence: nobody edits or deletes it through the admin.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
