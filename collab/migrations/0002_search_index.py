from django.db import migrations

from collab.search_sql import DROP_SEARCH_COLUMN_SQL, SEARCH_COLUMN_SQL


class Migration(migrations.Migration):
    dependencies = [("collab", "0001_initial")]

    operations = [migrations.RunSQL(SEARCH_COLUMN_SQL, reverse_sql=DROP_SEARCH_COLUMN_SQL)]
