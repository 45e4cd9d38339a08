from django.db import migrations, models


class Migration(migrations.Migration):
    """The second new migration of bench/tenants.py (`--executors a,b`: one per executor)."""

    dependencies = [("tenant_probe", "0001_initial")]

    operations = [
        migrations.AddField(model_name="probe", name="note", field=models.CharField(max_length=40, default="")),
        migrations.AddIndex(model_name="probe", index=models.Index(fields=["label"], name="probe_label")),
    ]
