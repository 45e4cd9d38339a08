"""What a customer decides about a business, kept in the public schema so every path can check
it, whichever business's schema it runs in."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Block(models.Model):
    """A customer blocked a business: no business-to-customer message goes out, by any path."""

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="blocks")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="blocked_by")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("block")
        verbose_name_plural = _("blocks")
        constraints = [models.UniqueConstraint(fields=["customer", "business"], name="block_unique_pair")]

    def __str__(self) -> str:
        return f"{self.customer} blocked {self.business}"


class MarketingMute(models.Model):
    """A customer muted a business's marketing messages (service and utility still arrive)."""

    customer = models.ForeignKey("accounts.Customer", on_delete=models.CASCADE, related_name="marketing_mutes")
    business = models.ForeignKey("tenancy.Business", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("marketing mute")
        verbose_name_plural = _("marketing mutes")
        constraints = [models.UniqueConstraint(fields=["customer", "business"], name="mute_unique_pair")]

    def __str__(self) -> str:
        return f"{self.customer} muted marketing from {self.business}"
