"""Business schemas reference users and customers without a database constraint
(tenancy.public_references)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from tenancy.public_references import without_constraints_into_public


class Migration(migrations.Migration):
    dependencies = [
        ("assignment", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        without_constraints_into_public(
            ("assignment_agentstatus", "user_id", "accounts_user"),
            state_operations=[
                migrations.AlterField(
                    model_name="agentstatus",
                    name="user",
                    field=models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
    ]
