"""The customer's cross-business conversation list, in the public schema.

Only what /me/ needs without entering any business's schema: which business, when, how many
unread. Never message text: that stays in the business's schema.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CustomerThread(models.Model):
    # No index of its own: thread_unique_pair and thread_customer_recent both lead with it, and
    # the row is updated by every message (a non-HOT update writes every index again).
    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="threads", db_index=False)
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="+")
    last_activity_at = models.DateTimeField(_("last activity"))
    # Business messages the customer has not read yet.
    unread_count = models.PositiveIntegerField(_("unread"), default=0)

    class Meta:
        verbose_name = _("customer thread")
        verbose_name_plural = _("customer threads")
        ordering = ["-last_activity_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["customer", "business"], name="thread_unique_pair")]
        indexes = [models.Index(fields=["customer", "-last_activity_at"], name="thread_customer_recent")]

    def __str__(self) -> str:
        return f"{self.customer} ↔ {self.business}"
