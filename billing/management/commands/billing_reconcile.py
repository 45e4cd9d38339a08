"""Compare the usage ledger with what Stripe's meters hold for one month, and print differences."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import selectors, stripe_gateway
from billing.reconcile import reconcile_period


class Command(BaseCommand):
    help = "Compare the ledger with Stripe's meter event summaries for a month (UTC) and print any difference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            start = selectors.period_parse(options["period"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        try:
            report = reconcile_period(start=start)
        except stripe_gateway.StripeNotConfigured as error:
            raise CommandError("STRIPE_SECRET_KEY is not set: there is nothing in Stripe to compare with.") from error
        except (stripe_gateway.StripeTemporaryError, stripe_gateway.StripePermanentError) as error:
            raise CommandError(f"Stripe could not be read: {error}") from error
        self.stdout.write(f"Period {start:%Y-%m} (UTC), values in meter units of €0.0001")
        for line in report.lines:
            self.stdout.write(line.text, style_func=self.style.WARNING if line.difference else None)
        if report.differences:
            self.stdout.write(self.style.ERROR(f"{report.differences} difference(s) found."))
        else:
            self.stdout.write(self.style.SUCCESS("Ledger and Stripe agree."))
