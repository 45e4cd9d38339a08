"""Business schemas reference users and customers without a database constraint
(tenancy.public_references)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from tenancy.public_references import without_constraints_into_public


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0004_webhook_delivery_claim"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        without_constraints_into_public(
            ("notifications_apikey", "created_by_id", "accounts_user"),
            state_operations=[
                migrations.AlterField(
                    model_name="apikey",
                    name="created_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
    ]
