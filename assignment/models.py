"""Assignment data, in each business's own schema: one settings row and one status per agent."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

DEFAULT_TIME_ZONE = "Europe/Berlin"
WEEKDAYS = range(7)  # Monday = 0, as datetime.weekday()


def default_hours() -> dict[str, Any]:
    """Monday to Friday, 09:00–17:00; closed at the weekend (null)."""
    return {str(day): (["09:00", "17:00"] if day < 5 else None) for day in WEEKDAYS}


class AssignmentSettings(models.Model):
    """The business's rules (one row, id 1). Read through assignment.selectors."""

    class Mode(models.TextChoices):
        OFF = "off", _("Off: agents claim conversations themselves")
        ROUND_ROBIN = "round_robin", _("Round robin: each online agent in turn")
        BALANCED = "balanced", _("Balanced: the online agent with the fewest open conversations")

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    mode = models.CharField(_("auto-assignment"), max_length=16, choices=Mode.choices, default=Mode.OFF)
    capacity = models.PositiveSmallIntegerField(
        _("capacity per agent"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(200)],
        help_text=_("At most this many open conversations are assigned to one agent automatically."),
    )
    auto_return_minutes = models.PositiveSmallIntegerField(
        _("return unanswered conversations after (minutes)"),
        default=0,
        validators=[MaxValueValidator(24 * 60)],
        help_text=_(
            "If the assignee has not replied by then, the conversation goes back to the queue. 0 turns this off."
        ),
    )
    only_assignee_replies = models.BooleanField(
        _("only the assignee may reply"),
        default=False,
        help_text=_("Other agents can still leave internal notes. Owners and admins can always take over."),
    )
    hours_enabled = models.BooleanField(_("use business hours"), default=False)
    time_zone = models.CharField(_("time zone"), max_length=64, default=DEFAULT_TIME_ZONE)
    # {"0": ["09:00", "17:00"], ..., "6": null}: one opening interval per weekday, local time.
    hours = models.JSONField(_("business hours"), default=default_hours)
    away_message = models.TextField(
        _("away message"),
        max_length=1000,
        blank=True,
        help_text=_("Sent once when a customer writes outside business hours."),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("assignment settings")
        verbose_name_plural = _("assignment settings")

    def __str__(self) -> str:
        return str(self.get_mode_display())

    @property
    def auto_assign(self) -> bool:
        return self.mode != self.Mode.OFF


class AgentStatus(models.Model):
    """An agent's availability, set by the agent; `online` agents receive conversations.

    When the agent's last inbox tab closes, an online agent becomes away (`auto_away`), and
    online again when they open the inbox; a status the agent chose is never changed for them."""

    class Status(models.TextChoices):
        ONLINE = "online", _("Online")
        AWAY = "away", _("Away")
        OFFLINE = "offline", _("Offline")

    # No database constraint into public (a trigger pair per business): messaging.models.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, db_constraint=False, on_delete=models.CASCADE, related_name="+"
    )
    status = models.CharField(_("status"), max_length=8, choices=Status.choices, default=Status.OFFLINE)
    auto_away = models.BooleanField(default=False)
    # Round robin serves the agent whose last assignment is oldest.
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("agent status")
        verbose_name_plural = _("agent statuses")

    def __str__(self) -> str:
        return f"{self.user_id}: {self.status}"
