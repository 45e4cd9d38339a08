from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from billing import services
from billing.models import BillingAccount, Invoice, Rate, RateCard, StripeEvent, UsageRecord

logger = logging.getLogger("parley.billing")


class RateForm(forms.ModelForm[Rate]):
    class Meta:
        model = Rate
        fields = ["category", "country", "price"]

    def clean_country(self) -> str:
        # Phone numbers give upper-case ISO codes; "de" would silently never match.
        country = (self.cleaned_data.get("country") or "").strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise forms.ValidationError(_("Use the two-letter ISO country code, for example DE."))
        return country


class RateInline(admin.TabularInline[Rate, RateCard]):
    model = Rate
    form = RateForm
    extra = 1


@admin.register(RateCard)
class RateCardAdmin(admin.ModelAdmin[RateCard]):
    list_display = [
        "name",
        "is_active",
        "pricing_model",
        "default_service",
        "default_utility",
        "default_marketing",
        "default_authentication",
        "updated_at",
    ]
    inlines = [RateInline]
    actions = ["make_active"]

    @admin.action(description=_("Make the selected rate card active"))
    def make_active(self, request: HttpRequest, queryset: QuerySet[RateCard]) -> None:
        cards = list(queryset[:2])
        if len(cards) != 1:
            self.message_user(request, _("Select exactly one rate card."), messages.ERROR)
            return
        card = services.rate_card_activate(card=cards[0], actor=request.user)
        self.message_user(request, _("“%(name)s” is now the active rate card.") % {"name": card.name}, messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: RateCard, form: Any, change: bool) -> None:
        services.rate_card_save(card=obj, actor=request.user)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin[UsageRecord]):
    """The usage ledger across every business. Read-only: the ledger is written by services."""

    list_display = [
        "opened_at",
        "business",
        "category",
        "unit",
        "country",
        "unit_price",
        "free",
        "voided_at",
        "report_state",
    ]
    list_filter = ["category", "unit", "report_state", "free", "country", "business"]
    search_fields = ["id", "business__slug", "business__display_name"]
    date_hierarchy = "opened_at"
    list_select_related = ["business"]
    # The ledger grows by a row per conversation: no second COUNT(*) over all of it per page.
    show_full_result_count = False
    actions = ["report_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False

    @admin.action(description=_("Report again to Stripe (pending or failed records)"))
    def report_again(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> None:
        queued = services.usage_reports_requeue(record_ids=[str(pk) for pk in queryset.values_list("pk", flat=True)])
        self.message_user(request, _("%(n)d report(s) queued.") % {"n": queued}, messages.SUCCESS)


class InvoiceInline(admin.TabularInline[Invoice, BillingAccount]):
    model = Invoice
    extra = 0
    can_delete = False
    readonly_fields = ("id", "number", "status", "amount_due", "amount_paid", "period_start", "period_end", "created")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: BillingAccount | None = None) -> bool:
        return False  # our copy of Stripe's invoices: written by webhooks only


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin[BillingAccount]):
    list_display = ["business", "stripe_customer_id", "subscription_status", "grace_period_ends_at", "updated_at"]
    list_filter = ["subscription_status"]
    search_fields = ["business__slug", "business__display_name", "stripe_customer_id", "subscription_id"]
    readonly_fields = ["subscription_event_at", "created_at", "updated_at"]
    # A select of every business on the platform would load them all into each change form.
    raw_id_fields = ["business"]
    inlines = [InvoiceInline]

    def save_model(self, request: HttpRequest, obj: BillingAccount, form: Any, change: bool) -> None:
        services.billing_account_save(account=obj, actor=request.user, changed=list(form.changed_data))


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin[StripeEvent]):
    list_display = ["received_at", "type", "id", "processed_at", "attempts"]
    list_filter = ["type", "processed_at"]
    search_fields = ["id", "type"]
    readonly_fields = ["id", "type", "created", "payload", "received_at", "processed_at", "attempts", "error"]
    show_full_result_count = False
    actions = ["process_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=_("Process now (unprocessed events only)"))
    def process_now(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        done = failed = 0
        for pk in queryset.values_list("pk", flat=True):
            try:
                done += services.stripe_event_process(event_id=pk)
            except Exception:  # kept on the event (error, attempts); one bad event must not stop the rest
                logger.exception("processing Stripe event %s from the admin failed", pk)
                failed += 1
        self.message_user(request, _("%(n)d event(s) processed.") % {"n": done}, messages.SUCCESS)
        if failed:
            self.message_user(
                request, _("%(n)d event(s) failed again: see each event's error.") % {"n": failed}, messages.ERROR
            )
