"""The first active rate card, at the launch prices, made at setup: the public pricing page and
every send read it, and a page view must not be the thing that creates it."""

from decimal import Decimal

from django.db import migrations

# The launch prices as they were when this migration was written (billing.models.LAUNCH_PRICES);
# a migration keeps its own copy so later price changes do not rewrite history.
LAUNCH_CARD = {
    "name": "Parley rate card 2026",
    "default_service": Decimal("0.0300"),
    "default_utility": Decimal("0.0400"),
    "default_marketing": Decimal("0.0700"),
    "default_authentication": Decimal("0.0350"),
}


def create_launch_card(apps, schema_editor):  # type: ignore[no-untyped-def]
    RateCard = apps.get_model("billing", "RateCard")
    if not RateCard.objects.filter(is_active=True).exists():
        RateCard.objects.create(is_active=True, **LAUNCH_CARD)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_invoice_payment_failed")]

    operations = [migrations.RunPython(create_launch_card, migrations.RunPython.noop)]
