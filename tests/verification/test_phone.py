"""E.164 normalisation of what people type, and clear errors for what is not a number."""

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import World, business_client
from verification.forms import PhoneForm
from verification.phone import normalise_phone, phone_display, phone_region


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+49 (0)30 1234-567", "DE", "+49301234567"),
        ("+49 (0)30 1234-567", None, "+49301234567"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("0049 30 1234567", None, "+49301234567"),
        ("030 1234567", "DE", "+49301234567"),
        ("030/123 45 67", "DE", "+49301234567"),
        ("+49 30 1234567", "AT", "+49301234567"),  # a country code wins over the region
        ("0151 23456789", "DE", "+4915123456789"),
        ("01 234 5678", "AT", "+4312345678"),
        ("(415) 555-2671", "US", "+14155552671"),
    ],
)
def test_messy_input_becomes_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("", "DE", "Please enter a phone number."),
        ("hello", "DE", "That doesn't look like a phone number."),
        ("030 1234567", None, "Add the country code"),
        ("+999 1234567", None, "not a country code"),
        ("12", "DE", "too few or too many digits"),
        ("+49 30", "DE", "too few or too many digits"),
        ("+1 555 000 0000", None, "not a valid phone number"),
        ("1" * 50, "DE", "too long"),
    ],
)
def test_bad_numbers_get_clear_errors(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        normalise_phone(raw, region)
    assert message in " ".join(error.value.messages)


def test_form_reports_error_on_the_phone_field() -> None:
    form = PhoneForm({"region": "DE", "phone": "not a number"})
    assert not form.is_valid()
    assert form.errors["phone"] == ["That doesn't look like a phone number."]
    form = PhoneForm({"region": "DE", "phone": "+49 (0)151 2345-6789"})
    assert form.is_valid()
    assert form.cleaned_data["e164"] == "+4915123456789"


def test_unknown_region_is_a_form_error_not_a_500() -> None:
    form = PhoneForm({"region": "XX", "phone": "030 1234567"})
    assert not form.is_valid()
    assert "region" in form.errors


def test_display_and_region() -> None:
    assert phone_display("+49301234567") == "+49 30 1234567"
    assert phone_region("+4312345678") == "AT"


def test_bad_number_on_dashboard_is_a_400_with_the_message(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    response = client.post("/verification/phone/", {"region": "DE", "phone": "+49 30"})
    assert response.status_code == 400
    assert "too few or too many digits" in response.content.decode()


def test_logs_get_a_masked_number() -> None:
    from verification.phone import phone_masked

    assert phone_masked("+4915123456789") == "+491…89"
    assert phone_masked("+4912") == "…"
