from django.db import migrations

from tenancy.provisioning import CLONE_FUNCTION_SQL


class Migration(migrations.Migration):
    """The clone function looks the template's catalog entries up by its relations' oids: its
    joins by schema name made the copy quadratic in the number of businesses (2.3 s at 500)."""

    dependencies = [("tenancy", "0006_spareschema")]

    operations = [migrations.RunSQL(CLONE_FUNCTION_SQL, reverse_sql=migrations.RunSQL.noop)]
