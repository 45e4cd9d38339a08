from django.db import models


class Probe(models.Model):
    """A small new table with an index, like a typical feature migration."""

    conversation_id = models.BigIntegerField(db_index=True)
    label = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.label
