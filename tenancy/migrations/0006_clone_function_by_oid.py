from django.db import migrations

from tenancy.provisioning import CLONE_FUNCTION_SQL


class Migration(migrations.Migration):
    """The clone function reads the template's columns by table oid and identity columns from
    the catalog: provisioning no longer slows down as businesses accumulate (issue 9)."""

    dependencies = [("tenancy", "0005_clone_functions_and_triggers")]

    operations = [migrations.RunSQL(CLONE_FUNCTION_SQL, reverse_sql=migrations.RunSQL.noop)]
