import django.db.models.deletion
from django.db import migrations, models

# The foreign key's own index only: an AlterField of db_index would also drop and re-add the
# foreign-key constraint (a check of every thread row under lock).
THREAD_CUSTOMER_INDEX = "directory_customerthread_customer_id_717bedec"


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_customer_phone_formatted"),
        ("directory", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="customerthread",
                    name="customer",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="threads",
                        to="accounts.customer",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {THREAD_CUSTOMER_INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {THREAD_CUSTOMER_INDEX} ON directory_customerthread (customer_id)",
                ),
            ],
        ),
    ]
