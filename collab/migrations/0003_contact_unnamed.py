from django.db import migrations


class Migration(migrations.Migration):
    """Search matches a customer's own name only for contacts the business has not named: a
    partial index holds those, so the match does not scan every customer (collab.search)."""

    dependencies = [("collab", "0002_search_index")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX contact_unnamed ON messaging_contact (customer_id) WHERE name = ''",
            reverse_sql="DROP INDEX IF EXISTS contact_unnamed",
        )
    ]
