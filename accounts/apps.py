from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    # allauth's "account" app is called "Accounts" in the admin: ours needs a name of its own.
    verbose_name = _("People and seats")

    def ready(self) -> None:
        from accounts import security_log  # noqa: F401  (connects the audit receivers)
        from accounts.dashboard import team_figures
        from tenancy.sections import register_figures

        register_figures("team", team_figures)
