from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from messaging import revocation  # noqa: F401  (connects the logout and suspension receivers)
        from messaging.dashboard import contacts_figures, inbox_figures
        from tenancy.sections import register_figures

        register_figures("inbox", inbox_figures)
        register_figures("contacts", contacts_figures)
