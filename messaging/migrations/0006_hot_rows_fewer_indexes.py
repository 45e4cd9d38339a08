import django.db.models.deletion
from django.db import migrations, models

# The foreign key's own index only (its name is Django's, the same in every schema): an
# AlterField of db_index would also drop and re-add the foreign-key constraint, which checks
# every message of every business again while holding locks on the table.
MESSAGE_CONVERSATION_INDEX = "messaging_message_conversation_id_3db4d3d1"


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0005_no_constraints_into_public"),
    ]

    operations = [
        migrations.AlterField(
            model_name="conversation",
            name="last_message_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="last message"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="conversation",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="messaging.conversation",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {MESSAGE_CONVERSATION_INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {MESSAGE_CONVERSATION_INDEX} ON messaging_message (conversation_id)",
                ),
            ],
        ),
    ]
