"""What several benches set up first: a business and its verified customers (no conversations)."""

from __future__ import annotations

from typing import Any


def business_with_customers(
    *, email: str, name: str, slug: str, count: int, phone_prefix: str = "+4917", display_name: str = "Kunde"
) -> tuple[Any, list[Any]]:
    """The platform set up, a business owned by a new user `email`, and `count` verified German
    customers (`phone_prefix` + a nine-digit number, "`display_name` n"), made in one insert."""
    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import Customer, User
    from tenancy.services import business_create

    call_command("parley_setup", verbosity=0)
    owner = User.objects.create_user(email, "x" * 16)
    business = business_create(owner=owner, name=name, slug=slug)
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(
            phone_number=f"{phone_prefix}{n:09d}",
            display_name=f"{display_name} {n}",
            country_code="DE",
            verified_at=now,
        )
        for n in range(count)
    )
    return business, customers


def flight_notice(customer: Any, body: str = "Flug AB 123 jetzt 10:40.") -> Any:
    """An airline's flight-change template send to `customer` through the API's author, once per
    customer (its client_msg_id is the customer's)."""
    from messaging.sending import check_template_send

    return check_template_send(
        customer=customer,
        template_name="flight_change",
        body=body,
        category="utility",
        author_key="api:1",
        client_msg_id=f"n{customer.pk}",
    )
