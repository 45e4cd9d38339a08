"""Demo data for verification: the airline is verified with an approved badge, the bakery has a
verified number but no badge, and a few customers have verified numbers. Idempotent."""

from __future__ import annotations

import struct
import zlib

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import Customer, User
from customers.services import customer_contact_record
from tenancy.demo import DemoWorld
from tenancy.models import Business
from verification.models import BadgeApplication

DEMO_CUSTOMERS = {
    "customer_lea": ("+4915111111111", "Lea Hoffmann"),
    "customer_tom": ("+4915222222222", "Tom Richter"),
    "customer_ines": ("+436641234567", "Ines Gruber"),
}


def _square_png(rgb: tuple[int, int, int], size: int = 64) -> bytes:
    """A plain coloured square, so the demo logos need no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )


def _profile(business: Business, *, rgb: tuple[int, int, int], phone: str, **fields: str) -> Business:
    for name, value in fields.items():
        setattr(business, name, value)
    if not business.logo:
        business.logo.save(f"{business.slug}.png", ContentFile(_square_png(rgb)), save=False)
    if business.phone_number != phone or business.phone_verified_at is None:
        business.phone_number = phone
        business.phone_verified_at = timezone.now()
    business.save()
    return business


# The airline owner's authenticator secret (base32), printed by `seed_demo`: a badge needs the
# owner's two-factor authentication, so the approved airline's owner has it on, like a real one.
DEMO_TOTP_SECRET = "PARLEYDEMOAURORAOWNER234"
# The platform staff's: the admin opens only with two-factor authentication (accounts.admin_access).
DEMO_STAFF_TOTP_SECRET = "PARLEYDEMOSTAFFADMIN2345"


def _owner_totp(owner: User, secret: str = DEMO_TOTP_SECRET) -> None:
    if not Authenticator.objects.filter(user=owner, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(owner, secret)


def seed(world: DemoWorld) -> None:
    airline = _profile(
        world.airline,
        rgb=(31, 58, 95),
        phone="+4917012345678",
        description="Aurora Air flies from Frankfurt and Vienna to 40 cities in Europe. Ask us about "
        "your booking, baggage and flight times.",
        category=Business.Category.TRAVEL,
        website="https://aurora-air.example",
        email="service@aurora-air.example",
        address="Flughafen Frankfurt, Terminal 1, 60547 Frankfurt am Main",
    )
    if not BadgeApplication.objects.filter(business=airline, status=BadgeApplication.Status.APPROVED).exists():
        now = timezone.now()
        BadgeApplication.objects.create(
            business=airline,
            status=BadgeApplication.Status.APPROVED,
            website=airline.website,
            press_links="https://news.example/aurora-air-new-routes",
            registration_number="HRB 98765 (Amtsgericht Frankfurt am Main)",
            created_by=world.users["airline_owner"],
            submitted_by=world.users["airline_owner"],
            submitted_at=now,
            reviewed_by=world.staff,
            reviewed_at=now,
            decision_reason="Demo: register entry and website checked.",
        )
    airline.badge_status = Business.BadgeStatus.APPROVED
    airline.save(update_fields=["badge_status"])
    _owner_totp(world.users["airline_owner"])
    _owner_totp(world.staff, DEMO_STAFF_TOTP_SECRET)

    bakery = _profile(
        world.bakery,
        rgb=(176, 112, 48),
        phone="+4917112345670",
        description="Family bakery in Berlin-Prenzlauer Berg: bread, cakes and orders for celebrations.",
        category=Business.Category.FOOD,
        address="Kastanienallee 12, 10435 Berlin",
    )
    bakery.badge_status = Business.BadgeStatus.NONE
    bakery.save(update_fields=["badge_status"])

    now = timezone.now()
    for key, (phone, name) in DEMO_CUSTOMERS.items():
        customer, _created = Customer.objects.update_or_create(
            phone_number=phone,
            defaults={
                "display_name": name,
                "country_code": "AT" if phone.startswith("+43") else "DE",
                "verified_at": now,
            },
        )
        world.customers[key] = customer
        for business in (airline, bakery):
            customer_contact_record(customer_id=customer.pk, business_id=business.pk)

    public = settings.PARLEY_PUBLIC_URL
    world.lines.append("")
    world.lines.append(f"Customers sign in at {public}/me/ with a phone number and a texted code; read the")
    world.lines.append(f"codes in the SMS outbox at {public}/dev/outbox/ (and in the server log). Demo customers:")
    for phone, name in DEMO_CUSTOMERS.values():
        world.lines.append(f"    {name:<18} {phone}")
    world.lines.append(
        f"Aurora Air has the green badge; Bäckerei Kraus a verified number only. Badge review: {public}/admin/"
    )
    owner = world.users["airline_owner"].email
    world.lines.append(
        f"{owner} has two-factor authentication on (the badge requires it): add the secret "
        f"{DEMO_TOTP_SECRET} to an authenticator app, or run `oathtool --totp -b {DEMO_TOTP_SECRET}`."
    )
    world.lines.append(
        f"{world.staff.email} (the admin needs two-factor authentication): secret {DEMO_STAFF_TOTP_SECRET}, "
        f"or `oathtool --totp -b {DEMO_STAFF_TOTP_SECRET}`."
    )
