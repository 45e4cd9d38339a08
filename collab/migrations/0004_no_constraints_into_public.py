"""Business schemas reference users and customers without a database constraint
(tenancy.public_references)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from tenancy.public_references import without_constraints_into_public


class Migration(migrations.Migration):
    dependencies = [
        ("collab", "0003_contact_unnamed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        without_constraints_into_public(
            ("collab_agentnotification", "actor_id", "accounts_user"),
            ("collab_agentnotification", "user_id", "accounts_user"),
            ("collab_conversationlabel", "added_by_id", "accounts_user"),
            state_operations=[
                migrations.AlterField(
                    model_name="agentnotification",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="agentnotification",
                    name="user",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="conversationlabel",
                    name="added_by",
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
