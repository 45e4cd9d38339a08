from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AssignmentConfig(AppConfig):
    """Per business (tenant schema): who answers which conversation — assignment settings,
    agents' statuses, the queue, auto-return, snooze wake-ups, business hours."""

    name = "assignment"
    verbose_name = _("Assignment")

    def ready(self) -> None:
        from accounts.signals import seat_removed
        from assignment import receivers

        seat_removed.connect(receivers.on_seat_removed, dispatch_uid="assignment.seat_removed")
