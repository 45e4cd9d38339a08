"""SMS pumping (issue 10, defect 5): one-time codes go only to mobile numbers (or North
America's "fixed line or mobile") in the countries of PARLEY_SMS_COUNTRIES. Premium-rate,
shared-cost, toll-free and the other money-making number types get a clear, translated form
error, and no code is made or texted."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from tests.conftest import World, business_client, public_client
from verification.forms import PhoneForm
from verification.models import PhoneChallenge, SmsMessage
from verification.otp import otp_send

REFUSED_TYPES = [
    pytest.param("+499001234567", id="DE-premium-rate"),
    pytest.param("+498001234567890", id="DE-toll-free"),
    pytest.param("+4918012345", id="DE-shared-cost"),
    pytest.param("+4970012345678", id="DE-personal-number"),
    pytest.param("+4916412345", id="DE-pager"),
    pytest.param("+4918500123456", id="DE-UAN"),
    pytest.param("+4930123456", id="DE-landline"),
    pytest.param("+449012345678", id="GB-premium-rate"),
    pytest.param("+445612345678", id="GB-VoIP"),
    pytest.param("+33884012345", id="FR-shared-cost"),
    pytest.param("+43900123456", id="AT-premium-rate"),
    pytest.param("+19002345678", id="US-premium-rate"),
    pytest.param("+18002345678", id="US-toll-free"),
]
ALLOWED = [
    pytest.param("+4915123456789", id="DE-mobile"),
    pytest.param("+447400123456", id="GB-mobile"),
    pytest.param("+43664123456", id="AT-mobile"),
    pytest.param("+12015550123", id="US-fixed-line-or-mobile"),
]


@pytest.mark.parametrize("number", REFUSED_TYPES)
def test_numbers_that_are_not_mobile_get_no_code(world: World, number: str) -> None:
    form = PhoneForm({"region": "DE", "phone": number})
    assert not form.is_valid()
    assert "Codes can only be sent to mobile numbers" in str(form.errors["phone"])
    with pytest.raises(ValidationError):
        otp_send(purpose=PhoneChallenge.Purpose.CUSTOMER_SIGN_IN, phone_number=number, message="{code}")
    assert not PhoneChallenge.objects.filter(phone_number=number).exists()


@pytest.mark.parametrize("number", ALLOWED)
def test_mobile_numbers_in_served_countries_are_accepted(world: World, number: str) -> None:
    form = PhoneForm({"region": "DE", "phone": number})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["e164"] == number


def test_mobile_numbers_outside_the_allowed_countries_are_refused(world: World, settings: Any) -> None:
    nigeria_mobile = "+2348021234567"
    form = PhoneForm({"region": "DE", "phone": nigeria_mobile})
    assert not form.is_valid()
    assert "We cannot send codes to numbers in Nigeria yet" in str(form.errors["phone"])
    settings.PARLEY_SMS_COUNTRIES = frozenset({"NG"})
    assert PhoneForm({"region": "DE", "phone": nigeria_mobile}).is_valid()
    german_mobile = PhoneForm({"region": "DE", "phone": "0151 23456789"})
    assert not german_mobile.is_valid()
    assert "Germany" in str(german_mobile.errors["phone"])


def test_the_errors_are_translated(world: World) -> None:
    with translation.override("de"):
        form = PhoneForm({"region": "DE", "phone": "+499001234567"})
        assert not form.is_valid()
        assert "Mobilfunknummer" in str(form.errors["phone"])
        abroad = PhoneForm({"region": "DE", "phone": "+2348021234567"})
        assert not abroad.is_valid()
        assert "Nigeria" in str(abroad.errors["phone"]) and "Mobilfunknummer" in str(abroad.errors["phone"])


def test_customer_sign_in_with_a_premium_number_is_a_400_and_texts_nothing(world: World) -> None:
    number = "+499001234567"
    sent_before = SmsMessage.objects.count()
    response = public_client().post("/me/", {"region": "DE", "phone": number})
    assert response.status_code == 400
    assert b"Codes can only be sent to mobile numbers" in response.content
    assert not PhoneChallenge.objects.filter(phone_number=number).exists()
    assert SmsMessage.objects.count() == sent_before


def test_business_verification_with_a_toll_free_number_is_a_400_and_texts_nothing(world: World) -> None:
    number = "+498001234567890"
    response = business_client(world.business_a, world.owner_a).post(
        "/verification/phone/", {"region": "DE", "phone": number}
    )
    assert response.status_code == 400
    assert b"Codes can only be sent to mobile numbers" in response.content
    assert not PhoneChallenge.objects.filter(phone_number=number).exists()
