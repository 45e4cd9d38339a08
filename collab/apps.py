from django.apps import AppConfig


class CollabConfig(AppConfig):
    name = "collab"
    verbose_name = "Collaboration"

    def ready(self) -> None:
        from collab.services import note_mentions_notify
        from messaging.services import on_note_created

        on_note_created(note_mentions_notify)
