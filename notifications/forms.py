from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from notifications.models import ApiKey, Template, WebhookEndpoint


class TemplateForm(forms.Form):
    """What the dashboard asks for; the service validates it (one set of rules for API and page)."""

    name = forms.CharField(label=_("Name"), max_length=60, help_text=_("Lowercase, e.g. flight_change."))
    language = forms.CharField(label=_("Language"), max_length=8, initial="en", help_text=_("e.g. en, de, en_GB"))
    category = forms.ChoiceField(label=_("Category"), choices=Template.Category.choices)
    header = forms.CharField(label=_("Header (optional)"), max_length=60, required=False)
    body = forms.CharField(
        label=_("Body"),
        max_length=1024,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("Placeholders in double braces: Your flight {{flight}} now leaves at {{time}}."),
    )
    footer = forms.CharField(label=_("Footer (optional)"), max_length=60, required=False)
    button_1 = forms.CharField(label=_("Quick-reply button 1"), max_length=25, required=False)
    button_2 = forms.CharField(label=_("Quick-reply button 2"), max_length=25, required=False)
    button_3 = forms.CharField(label=_("Quick-reply button 3"), max_length=25, required=False)

    def buttons(self) -> list[str]:
        return [self.cleaned_data[f"button_{i}"] for i in (1, 2, 3) if self.cleaned_data.get(f"button_{i}")]

    @classmethod
    def for_template(cls, template: Template) -> TemplateForm:
        initial = {f: getattr(template, f) for f in ("name", "language", "category", "header", "body", "footer")}
        for i, label in enumerate(template.buttons, start=1):
            initial[f"button_{i}"] = label
        form = cls(initial=initial)
        form.fields["name"].disabled = True
        form.fields["language"].disabled = True
        return form


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("Where it is used, e.g. “Booking system”."))
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKey.Scope.SEND, ApiKey.Scope.READ],
    )


class WebhookForm(forms.Form):
    url = forms.URLField(label=_("Endpoint URL"), max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        label=_("Events"),
        choices=WebhookEndpoint.EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=list(WebhookEndpoint.EventType.values),
    )
