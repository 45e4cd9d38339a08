from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from customers.models import Report


class ReportForm(forms.Form):
    reason = forms.ChoiceField(label=_("What is wrong?"), choices=Report.Reason.choices, widget=forms.RadioSelect)
    details = forms.CharField(
        label=_("Details"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Optional, unless you chose “Something else”. Our team reads every report."),
    )
    block = forms.BooleanField(label=_("Also block this business"), required=False, initial=True)
