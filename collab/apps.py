from django.apps import AppConfig


class CollabConfig(AppConfig):
    name = "collab"
    verbose_name = "Collaboration"

    def ready(self) -> None:
        from collab.selectors import conversations_with_labels
        from collab.services import note_mentions_notify
        from messaging.selectors import register_conversation_filter
        from messaging.services import on_note_created

        on_note_created(note_mentions_notify)
        register_conversation_filter(conversations_with_labels)
