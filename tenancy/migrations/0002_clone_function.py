from django.db import migrations

from tenancy.provisioning import CLONE_FUNCTION_SQL


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0001_initial")]

    operations = [
        migrations.RunSQL(
            CLONE_FUNCTION_SQL,
            reverse_sql="DROP FUNCTION IF EXISTS public.parley_clone_schema(text, text);",
        )
    ]
