from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TemplateReviewsConfig(AppConfig):
    """Public schema: the staff review queue for every business's templates, and each
    business's sending limits (staff-editable), so staff work across businesses in one place."""

    name = "template_reviews"
    verbose_name = _("Template review")

    def ready(self) -> None:
        from template_reviews.notices import template_notices
        from tenancy import notices

        notices.register(template_notices)
