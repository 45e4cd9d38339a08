from django.db import migrations

from tenancy.provisioning import CLONE_FUNCTION_SQL


class Migration(migrations.Migration):
    """The clone function also copies a schema's functions and triggers (insights' service
    cycles) and skips generated columns (collab's search vector) when copying rows."""

    dependencies = [("tenancy", "0004_business_conversation_retention_days")]

    operations = [migrations.RunSQL(CLONE_FUNCTION_SQL, reverse_sql=migrations.RunSQL.noop)]
