from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AttachmentsConfig(AppConfig):
    """Per business (tenant schema): files sent in conversations, their private storage and
    signed URLs, and the retention job."""

    name = "attachments"
    verbose_name = _("Attachments")
