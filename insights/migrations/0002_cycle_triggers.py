from django.db import migrations

from insights.cycles import DROP_TRIGGERS_SQL, REBUILD_SQL, TRIGGERS_SQL


class Migration(migrations.Migration):
    dependencies = [("insights", "0001_initial")]

    operations = [
        migrations.RunSQL(REBUILD_SQL, reverse_sql="DELETE FROM insights_cycle;"),
        migrations.RunSQL(TRIGGERS_SQL, reverse_sql=DROP_TRIGGERS_SQL),
    ]
