"""Demo data shared by every app's demo step: who exists, which businesses, which customers."""

from __future__ import annotations

from dataclasses import dataclass, field

from accounts.models import Customer, Membership, User
from tenancy.models import Business
from tenancy.services import business_create

DEMO_PASSWORD = "parley-demo-2026"


@dataclass
class DemoWorld:
    staff: User
    airline: Business
    bakery: Business
    users: dict[str, User] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def demo_user(email: str, full_name: str, *, staff: bool = False) -> User:
    user, created = User.objects.get_or_create(email=email, defaults={"full_name": full_name})
    if created or not user.has_usable_password():
        user.set_password(DEMO_PASSWORD)
    user.full_name = full_name
    user.is_staff = staff
    user.is_superuser = staff
    user.save()
    from allauth.account.models import EmailAddress

    EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    return user


def demo_business(*, owner: User, name: str, slug: str, display_name: str) -> Business:
    business = Business.objects.filter(slug=slug).first()
    if business is None:
        business = business_create(owner=owner, name=name, slug=slug, display_name=display_name)
    return business


def demo_seat(user: User, business: Business, role: str) -> None:
    Membership.objects.update_or_create(user=user, business=business, defaults={"role": role})


def seed_foundation() -> DemoWorld:
    staff = demo_user("staff@parley.localhost", "Petra Staff", staff=True)
    airline_owner = demo_user("owner@aurora-air.example", "Anna Berger")
    airline_agent_1 = demo_user("agent1@aurora-air.example", "Jonas Weber")
    airline_agent_2 = demo_user("agent2@aurora-air.example", "Mia Schulz")
    bakery_owner = demo_user("owner@baeckerei-kraus.example", "Klara Kraus")
    bakery_agent = demo_user("lena@baeckerei-kraus.example", "Lena Vogel")

    airline = demo_business(owner=airline_owner, name="Aurora Air GmbH", slug="aurora-air", display_name="Aurora Air")
    bakery = demo_business(
        owner=bakery_owner, name="Bäckerei Kraus", slug="baeckerei-kraus", display_name="Bäckerei Kraus"
    )
    demo_seat(airline_owner, airline, Membership.Role.OWNER)
    demo_seat(airline_agent_1, airline, Membership.Role.AGENT)
    demo_seat(airline_agent_2, airline, Membership.Role.AGENT)
    demo_seat(bakery_owner, bakery, Membership.Role.OWNER)
    demo_seat(bakery_agent, bakery, Membership.Role.AGENT)

    world = DemoWorld(staff=staff, airline=airline, bakery=bakery)
    world.users.update(
        staff=staff,
        airline_owner=airline_owner,
        airline_agent_1=airline_agent_1,
        airline_agent_2=airline_agent_2,
        bakery_owner=bakery_owner,
        bakery_agent=bakery_agent,
    )
    return world
