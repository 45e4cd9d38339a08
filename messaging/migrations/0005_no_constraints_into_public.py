"""Business schemas reference users and customers without a database constraint
(tenancy.public_references)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from tenancy.public_references import without_constraints_into_public


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_customer_phone_formatted"),
        ("messaging", "0004_merge_0003_conversation_lifecycle_0003_rich_messages"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        without_constraints_into_public(
            ("messaging_agentpresence", "user_id", "accounts_user"),
            ("messaging_contact", "customer_id", "accounts_customer"),
            ("messaging_conversation", "assignee_id", "accounts_user"),
            ("messaging_message", "author_user_id", "accounts_user"),
            state_operations=[
                migrations.AlterField(
                    model_name="agentpresence",
                    name="user",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="contact",
                    name="customer",
                    field=models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.customer",
                    ),
                ),
                migrations.AlterField(
                    model_name="conversation",
                    name="assignee",
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
                    model_name="message",
                    name="author_user",
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
