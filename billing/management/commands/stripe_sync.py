"""Create Parley's meters, products and prices in Stripe; safe to run again and again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing import stripe_gateway


class Command(BaseCommand):
    help = "Create the Stripe meters, products and metered prices (one per conversation category) if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            lines = stripe_gateway.catalog_sync()
        except stripe_gateway.StripeNotConfigured as error:
            raise CommandError("STRIPE_SECRET_KEY is not set: nothing to sync (ledger-only mode).") from error
        except (stripe_gateway.StripeTemporaryError, stripe_gateway.StripePermanentError) as error:
            raise CommandError(
                f"Stripe refused or failed: {error}. Nothing half-done is left: run it again."
            ) from error
        for line in lines:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Stripe catalogue is in sync."))
