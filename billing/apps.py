from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from billing.dashboard import billing_figures
        from tenancy.sections import register_figures

        register_figures("billing", billing_figures)
