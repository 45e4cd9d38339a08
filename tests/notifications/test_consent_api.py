"""Issue 14 via the API: a business records consent it collected itself (source "api"); every
send respects it; an opt-in cannot lift an opt-out the customer made in Parley."""

from __future__ import annotations

import json
from typing import Any

from customers.models import ConsentRecord, MarketingMute
from customers.selectors import consent_allows_send
from customers.services import customer_mute_marketing
from notifications import services
from tests.conftest import World, business_client, in_business
from tests.customers.conftest import make_customer


def _api(world: World, scopes: list[str] | None = None) -> tuple[Any, dict[str, str]]:
    with in_business(world.business_a):
        created = services.api_key_create(
            business=world.business_a, actor=world.owner_a, name="CRM", scopes=scopes or ["send", "read"]
        )
    return business_client(world.business_a), {"HTTP_AUTHORIZATION": f"Bearer {created.secret}"}


def _post(client: Any, auth: dict[str, str], body: dict[str, Any]) -> Any:
    return client.post("/api/v1/consents", data=json.dumps(body), content_type="application/json", **auth)


def test_a_business_records_an_opt_out_and_sends_respect_it(world: World) -> None:
    client, auth = _api(world)
    customer = make_customer()
    response = _post(client, auth, {"to": customer.phone_number, "category": "utility", "granted": False})
    assert response.status_code == 201, response.content
    assert response.json() == {"to": customer.phone_number, "category": "utility", "granted": False, "source": "api"}
    record = ConsentRecord.objects.get(customer=customer, business=world.business_a)
    assert (record.category, record.granted, record.source) == ("utility", False, "api")
    assert not consent_allows_send(customer_id=customer.pk, business_id=world.business_a.pk, category="utility")
    # Another business is not affected.
    assert consent_allows_send(customer_id=customer.pk, business_id=world.business_b.pk, category="utility")


def test_an_api_opt_in_cannot_lift_the_customers_own_opt_out(world: World) -> None:
    client, auth = _api(world)
    customer = make_customer()
    customer_mute_marketing(customer=customer, business=world.business_a)  # on the privacy page
    response = _post(client, auth, {"to": customer.phone_number, "category": "marketing", "granted": True})
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "customer_opted_out"
    assert MarketingMute.objects.filter(customer=customer, business=world.business_a).exists()
    assert not ConsentRecord.objects.filter(customer=customer, source="api").exists()


def test_an_api_opt_in_after_an_api_opt_out_counts(world: World) -> None:
    client, auth = _api(world)
    customer = make_customer()
    for granted in (False, True):
        response = _post(client, auth, {"to": customer.phone_number, "category": "marketing", "granted": granted})
        assert response.status_code == 201
    assert consent_allows_send(customer_id=customer.pk, business_id=world.business_a.pk, category="marketing")
    assert list(ConsentRecord.objects.filter(customer=customer).order_by("id").values_list("granted", "source")) == [
        (False, "api"),
        (True, "api"),
    ]


def test_bad_input_gets_a_clear_error(world: World) -> None:
    client, auth = _api(world)
    customer = make_customer()
    unknown = _post(client, auth, {"to": "+4915199999999", "category": "marketing", "granted": False})
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_a_customer"
    bad_number = _post(client, auth, {"to": "0151", "category": "marketing", "granted": False})
    assert bad_number.status_code == 400 and bad_number.json()["code"] == "invalid_phone"
    bad_category = _post(client, auth, {"to": customer.phone_number, "category": "service", "granted": False})
    assert bad_category.status_code == 400 and bad_category.json()["code"] == "invalid"
    read_only_client, read_only = _api(world, scopes=["read"])
    refused = _post(read_only_client, read_only, {"to": customer.phone_number, "category": "utility", "granted": False})
    assert refused.status_code == 403
    assert not ConsentRecord.objects.filter(customer=customer).exists()
