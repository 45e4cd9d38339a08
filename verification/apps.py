from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class VerificationConfig(AppConfig):
    name = "verification"
    verbose_name = _("Verification")

    def ready(self) -> None:
        from tenancy import notices
        from verification.notices import badge_notices

        notices.register(badge_notices)

        from tenancy.sections import register_figures
        from verification.dashboard import verification_figures

        register_figures("verification", verification_figures)
