from django.core.management import call_command

from accounts.models import Customer, User
from tenancy.models import Business
from tests.conftest import World
from verification.models import BadgeApplication
from verification.phone import sms_destination_check
from verification.selectors import badge_requirements, user_has_totp


def test_seed_demo_is_idempotent(world: World, settings: object) -> None:
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    airline = Business.objects.get(slug="aurora-air")
    bakery = Business.objects.get(slug="baeckerei-kraus")
    assert airline.badge_visible and airline.phone_verified_at and airline.logo
    assert bakery.phone_verified_at and not bakery.badge_visible
    assert BadgeApplication.objects.filter(business=airline).count() == 1
    assert Customer.objects.filter(phone_number__in=["+4915111111111", "+4915222222222", "+436641234567"]).count() == 3
    assert Customer.objects.filter(verified_at__isnull=False, phone_number="+4915111111111").exists()


def test_demo_airline_owner_has_the_two_factor_the_badge_requires(world: World) -> None:
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    airline = Business.objects.get(slug="aurora-air")
    owner = User.objects.get(email="owner@aurora-air.example")
    assert airline.badge_visible
    assert user_has_totp(user=owner)
    # Nothing the badge requires is left to do for the approved airline's owner.
    assert all(check.done for check in badge_requirements(business=airline, user=owner))


def test_demo_businesses_have_numbers_the_phone_form_accepts(world: World) -> None:
    """The seeded verified numbers are mobiles: the phone form refuses landlines ("Codes can only
    be sent to mobile numbers"), so a landline could never have been verified."""
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    for slug in ("aurora-air", "baeckerei-kraus"):
        business = Business.objects.get(slug=slug)
        assert business.phone_number.startswith("+49")
        sms_destination_check(business.phone_number)  # raises ValidationError for a landline
