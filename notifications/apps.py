from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    """Per business (tenant schema): message templates, API keys, API sends, idempotency."""

    name = "notifications"
    verbose_name = _("Notifications")

    def ready(self) -> None:
        from notifications.dashboard import api_figures, templates_figures
        from notifications.notices import webhook_notices
        from tenancy import notices
        from tenancy.sections import register_figures

        notices.register(webhook_notices)
        register_figures("templates", templates_figures)
        register_figures("api", api_figures)
