"""The assignment settings form: the rules, and business hours as one row per weekday."""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.utils.translation import gettext_lazy as _

from assignment.models import WEEKDAYS, AssignmentSettings

DAY_NAMES = [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday")]


class AssignmentSettingsForm(forms.ModelForm[AssignmentSettings]):
    time_zone = forms.ChoiceField(label=_("Time zone"))

    class Meta:
        model = AssignmentSettings
        fields = [
            "mode",
            "capacity",
            "auto_return_minutes",
            "only_assignee_replies",
            "hours_enabled",
            "time_zone",
            "away_message",
        ]
        widgets = {"mode": forms.RadioSelect, "away_message": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zones = self.fields["time_zone"]
        assert isinstance(zones, forms.ChoiceField)
        zones.choices = [(z, z) for z in sorted(available_timezones()) if "/" in z]
        hours = self.instance.hours or {}
        self.days = []
        for day in WEEKDAYS:
            span = hours.get(str(day))
            self.fields[f"day{day}_open"] = forms.BooleanField(
                label=_("Open on %(day)s") % {"day": DAY_NAMES[day]}, required=False, initial=bool(span)
            )
            self.fields[f"day{day}_start"] = forms.TimeField(
                label=_("%(day)s opens") % {"day": DAY_NAMES[day]},
                required=False,
                initial=span[0] if span else "09:00",
                widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            )
            self.fields[f"day{day}_end"] = forms.TimeField(
                label=_("%(day)s closes") % {"day": DAY_NAMES[day]},
                required=False,
                initial=span[1] if span else "17:00",
                widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            )
            self.days.append((DAY_NAMES[day], self[f"day{day}_open"], self[f"day{day}_start"], self[f"day{day}_end"]))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        hours: dict[str, list[str] | None] = {}
        for day in WEEKDAYS:
            if not data.get(f"day{day}_open"):
                hours[str(day)] = None
                continue
            start: time | None = data.get(f"day{day}_start")
            end: time | None = data.get(f"day{day}_end")
            if start is None or end is None or end <= start:
                self.add_error(f"day{day}_end", _("Closing time must be after opening time."))
                continue
            hours[str(day)] = [start.strftime("%H:%M"), end.strftime("%H:%M")]
        data["hours"] = hours
        if data.get("hours_enabled") and not any(hours.values()):
            self.add_error("hours_enabled", _("Open on at least one day, or turn business hours off."))
        return data

    def values(self) -> dict[str, Any]:
        """What assignment_settings_update saves."""
        return {name: self.cleaned_data[name] for name in [*self.Meta.fields, "hours"]}
