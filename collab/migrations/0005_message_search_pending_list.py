"""The messages' search index merges its pending list in small steps (collab.search_sql)."""

from django.db import migrations

from collab.search_sql import MESSAGE_SEARCH_PENDING_LIST_RESET_SQL, MESSAGE_SEARCH_PENDING_LIST_SQL


class Migration(migrations.Migration):
    dependencies = [("collab", "0004_no_constraints_into_public")]

    operations = [
        migrations.RunSQL(MESSAGE_SEARCH_PENDING_LIST_SQL, reverse_sql=MESSAGE_SEARCH_PENDING_LIST_RESET_SQL)
    ]
