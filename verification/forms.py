from __future__ import annotations

import re
import unicodedata
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from tenancy.models import Business
from verification.phone import DEFAULT_REGION, REGION_CHOICES, normalise_phone, sms_destination_check

LOGO_MAX_BYTES = 1024 * 1024
# Raster formats only, recognised by their first 12 bytes: an SVG could carry script. WebP is
# a RIFF container with "WEBP" at byte 8 (RIFF alone would also let WAV and AVI files in).
_JPEG = re.compile(rb"\xff\xd8\xff")
LOGO_SIGNATURES = {
    ".png": re.compile(rb"\x89PNG\r\n\x1a\n"),
    ".jpg": _JPEG,
    ".jpeg": _JPEG,
    ".webp": re.compile(rb"RIFF.{4}WEBP", re.DOTALL),
    ".gif": re.compile(rb"GIF8[79]a"),
}


class PhoneForm(forms.Form):
    region = forms.ChoiceField(
        label=_("Country"),
        choices=REGION_CHOICES,
        initial=DEFAULT_REGION,
        help_text=_("Used when the number has no country code."),
    )
    phone = forms.CharField(
        label=_("Phone number"),
        max_length=40,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel", "inputmode": "tel"}),
        help_text=_("A mobile number, for example 0151 23456789 or +49 151 23456789."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "phone" in data:
            try:
                data["e164"] = normalise_phone(data["phone"], data.get("region") or DEFAULT_REGION)
                # Every use of this form texts a code to the number.
                sms_destination_check(data["e164"])
            except ValidationError as error:
                self.add_error("phone", error)
        return data


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("6-digit code"),
        max_length=12,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9 ]*", "autofocus": True}
        ),
    )

    def clean_code(self) -> str:
        code = "".join(ch for ch in self.cleaned_data["code"] if not ch.isspace())
        # Any script's decimal digits (a phone keyboard may type "１２３" or "١٢٣"), as ASCII;
        # str.isdigit() would also let "²" through, which is no digit anyone means.
        if len(code) != 6 or not all(ch.isdecimal() for ch in code):
            raise ValidationError(_("The code has 6 digits."))
        return "".join(str(unicodedata.decimal(ch)) for ch in code)


class ProfileForm(forms.ModelForm[Business]):
    remove_logo = forms.BooleanField(label=_("Remove the logo"), required=False)

    class Meta:
        model = Business
        fields = ["display_name", "description", "category", "website", "email", "address", "logo"]
        labels = {"display_name": _("Display name")}
        help_texts = {
            "display_name": _("The name customers see. Changing it after approval sends the badge back to review."),
            "description": _("What you do, in a few sentences (at least 30 characters)."),
            "logo": _("PNG, JPEG, WebP or GIF, at most 1 MB."),
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "logo": forms.FileInput(attrs={"accept": "image/png,image/jpeg,image/webp,image/gif"}),
        }

    def clean_logo(self) -> Any:
        logo = self.cleaned_data.get("logo")
        if not isinstance(logo, UploadedFile):
            return logo
        name = (logo.name or "").lower()
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in LOGO_SIGNATURES:
            raise ValidationError(_("Please upload a PNG, JPEG, WebP or GIF image."))
        if logo.size is not None and logo.size > LOGO_MAX_BYTES:
            raise ValidationError(_("The logo is larger than 1 MB. Please upload a smaller image."))
        head = logo.read(12)
        logo.seek(0)
        if not LOGO_SIGNATURES[suffix].match(head):
            raise ValidationError(_("This file is not the image its name says it is."))
        return logo


class BadgeApplicationForm(forms.Form):
    website = forms.URLField(
        label=_("Official website"),
        max_length=300,
        required=False,
        assume_scheme="https",
        help_text=_("Where customers can check that this number and name belong to you."),
    )
    press_links = forms.CharField(
        label=_("Press links"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Articles about your business, one address per line (optional)."),
    )
    registration_number = forms.CharField(
        label=_("Company registration number"),
        max_length=64,
        required=False,
        help_text=_("For example HRB 123456 B from the commercial register."),
    )

    def clean_press_links(self) -> str:
        validator = forms.URLField(assume_scheme="https")
        lines = [line.strip() for line in self.cleaned_data["press_links"].splitlines() if line.strip()]
        if len(lines) > 10:
            raise ValidationError(_("Please list at most 10 links."))
        cleaned = []
        for line in lines:
            try:
                cleaned.append(validator.clean(line))
            except ValidationError:
                raise ValidationError(_("“%(line)s” is not a web address.") % {"line": line[:80]}) from None
        return "\n".join(cleaned)


# Shared by every page that asks for a number and a code (the business's verification page, the
# customer's sign-in at /me/), so no views module imports another.


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: trusting X-Forwarded-For is a deployment decision (a proxy in front).
    return request.META.get("REMOTE_ADDR") or None


def outbox_link() -> str:
    """In development the texts land in the outbox; point developers at it next to code forms."""
    if settings.DEBUG and settings.PARLEY_SMS_BACKEND == "outbox":
        return f"{settings.PARLEY_PUBLIC_URL}/dev/outbox/"
    return ""
