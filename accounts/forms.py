from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import Membership, User

DISPLAY_NAME_HELP = _("Customers see this name on your replies, e.g. “Anna from Support”.")


class DisplayNameField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", _("Display name"))
        kwargs.setdefault("help_text", DISPLAY_NAME_HELP)
        super().__init__(max_length=150, strip=True, **kwargs)


class SignupDetailsForm(forms.Form):
    """Extra sign-up fields (allauth's ACCOUNT_SIGNUP_FORM_CLASS): a name customers can read."""

    full_name = DisplayNameField(widget=forms.TextInput(attrs={"autocomplete": "name"}))

    def signup(self, request: HttpRequest, user: User) -> None:
        from accounts.services import user_display_name_set

        user_display_name_set(user=user, full_name=self.cleaned_data["full_name"])


class ProfileForm(forms.Form):
    full_name = DisplayNameField(widget=forms.TextInput(attrs={"autocomplete": "name"}))


class SeatAddForm(forms.Form):
    email = forms.EmailField(label=_("Email"))
    full_name = DisplayNameField(
        label=_("Their display name"), help_text=_("Customers see this name on their replies; they can change it.")
    )
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices, initial=Membership.Role.AGENT)
