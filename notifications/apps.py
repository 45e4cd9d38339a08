from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    """Per business (tenant schema): message templates, API keys, API sends, idempotency."""

    name = "notifications"
    verbose_name = _("Notifications")
