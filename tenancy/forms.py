from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from tenancy.models import Business
from tenancy.slugs import SLUG_MAX_LENGTH, normalise_slug, validate_slug


class BusinessCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Business name"), max_length=200, widget=forms.TextInput(attrs={"autocomplete": "organization"})
    )
    slug = forms.CharField(
        label=_("Address"),
        max_length=SLUG_MAX_LENGTH,
        help_text=_("Lowercase letters, digits and hyphens. Your customers will see it."),
        widget=forms.TextInput(attrs={"autocapitalize": "off", "spellcheck": "false"}),
    )

    def clean_slug(self) -> str:
        slug = normalise_slug(self.cleaned_data["slug"])
        validate_slug(slug)
        if Business.objects.filter(slug=slug).exists():
            raise ValidationError(_("This address is already taken. Please choose another."))
        return slug
