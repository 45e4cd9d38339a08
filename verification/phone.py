"""Phone numbers in, E.164 out: every number Parley stores went through `normalise_phone`."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

DEFAULT_REGION = "DE"  # the first market; the forms let people pick another country

# The countries offered for numbers written without a country code (Germany first).
REGION_CHOICES = [
    ("DE", _("Germany (+49)")),
    ("AT", _("Austria (+43)")),
    ("CH", _("Switzerland (+41)")),
    ("LI", _("Liechtenstein (+423)")),
    ("LU", _("Luxembourg (+352)")),
    ("NL", _("Netherlands (+31)")),
    ("BE", _("Belgium (+32)")),
    ("FR", _("France (+33)")),
    ("IT", _("Italy (+39)")),
    ("ES", _("Spain (+34)")),
    ("PL", _("Poland (+48)")),
    ("DK", _("Denmark (+45)")),
    ("GB", _("United Kingdom (+44)")),
    ("IE", _("Ireland (+353)")),
    ("US", _("United States (+1)")),
    ("CA", _("Canada (+1)")),
]


def normalise_phone(raw: str, region: str | None = DEFAULT_REGION) -> str:
    """Return the number in E.164 ("+49301234567") or raise a ValidationError that says what
    is wrong. Accepts what people type: spaces, dashes, brackets, "(0)", a leading "00"."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError(_("Please enter a phone number."), code="required")
    if len(text) > 40:
        raise ValidationError(_("That is too long for a phone number."), code="invalid")
    if text.startswith("00") and not region:
        # An international prefix written the European way; without a region phonenumbers
        # cannot know that "00" means "+".
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, (region or "").upper() or None)
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE and text.startswith("+"):
            raise ValidationError(
                _("The digits after the + are not a country code. Please check the number."), code="invalid"
            ) from error
        if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise ValidationError(
                _("Add the country code (for example +49) or choose the country."), code="invalid"
            ) from error
        raise ValidationError(_("That doesn't look like a phone number."), code="invalid") from error
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:  # "local only" lacks the area code
        raise ValidationError(
            _("This number has too few or too many digits for its country. Please check it."), code="invalid"
        )
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(_("This is not a valid phone number. Please check it."), code="invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Numbers a code may be texted to. Premium-rate, shared-cost, toll-free, personal, pager, UAN
# and VoIP numbers are refused: texting them is how SMS pumping earns money for whoever rents
# them (and a landline cannot read a text anyway). North American numbers cannot be told
# apart, so "fixed line or mobile" is allowed.
SMS_NUMBER_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})


def sms_destination_check(e164: str) -> None:
    """Raise a ValidationError unless a one-time code may be texted to this E.164 number: a
    mobile number in a country of settings.PARLEY_SMS_COUNTRIES."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as error:
        raise ValidationError(_("That doesn't look like a phone number."), code="invalid") from error
    region = phonenumbers.region_code_for_number(number) or ""
    if region not in settings.PARLEY_SMS_COUNTRIES:
        # Imported here: the geocoder's data costs ~100 MiB of memory per process (measured under
        # issue 9's load bench), for this one refusal message.
        from phonenumbers import geocoder

        country = geocoder.country_name_for_number(number, (get_language() or "en")[:2]) or region or "?"
        raise ValidationError(
            _(
                "We cannot send codes to numbers in %(country)s yet. Please use a mobile number from a country we serve."
            ),
            code="country_not_served",
            params={"country": country},
        )
    if phonenumbers.number_type(number) not in SMS_NUMBER_TYPES:
        raise ValidationError(
            _(
                "Codes can only be sent to mobile numbers. Toll-free, premium-rate, shared-cost and "
                "landline numbers cannot receive them; please enter a mobile number."
            ),
            code="not_mobile",
        )


def phone_region(e164: str) -> str:
    """The two-letter country of a normalised number ("" if unknown)."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


@lru_cache(maxsize=65536)  # pure, and parsing is the costliest part of an event's payload
def phone_display(e164: str) -> str:
    """A normalised number as people read it: "+49 30 1234567"."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164


def phone_masked(e164: str) -> str:
    """A number for logs: enough to debug ("+491…67"), not enough to identify someone."""
    return e164[:4] + "…" + e164[-2:] if len(e164) > 6 else "…"
