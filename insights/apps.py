from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"

    def ready(self) -> None:
        from insights.dashboard import live_strip, reports_figures
        from tenancy.sections import register_figures, register_live_figures

        register_figures("reports", reports_figures)
        register_live_figures(live_strip)
