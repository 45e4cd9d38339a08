"""What `make demo` prints is what a new user tries first: every number, key and example in it
must work against the demo it describes (the composed demo, every app's step in order — the
customers are verification's, not the ones an app's own step would make alone)."""

from __future__ import annotations

import io
import json
import re

from django.core.management import call_command

from accounts.models import Customer
from customers.selectors import customer_privacy_rows
from tenancy.models import Business
from tests.conftest import World, business_client


def seed_demo_printout() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_the_printed_api_example_sends_to_a_demo_customer(world: World) -> None:
    printed = seed_demo_printout()
    curl = next(line for line in printed.splitlines() if line.strip().startswith("curl -X POST"))
    key = re.search(r"Authorization: Bearer (\S+)'", curl)
    body = re.search(r"-d '(.+)'$", curl)
    assert key and body, curl
    payload = json.loads(body.group(1))
    assert Customer.objects.filter(phone_number=payload["to"], verified_at__isnull=False).exists(), payload
    airline = Business.objects.get(slug="aurora-air")
    answer = business_client(airline).post(
        "/api/v1/messages",
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key.group(1)}",
    )
    assert answer.status_code in (200, 201, 202), answer.content
    sent = answer.json()
    assert sent["status"] != "failed", sent
    assert sent["to"] == payload["to"] and sent["message_id"] is not None, sent


def test_the_printed_customers_exist_and_the_privacy_customer_has_something_at_both(world: World) -> None:
    printed = seed_demo_printout()
    listed = re.findall(r"^ {6}\S.*? {2,}(\+\d{8,15})$", printed, re.M)
    assert len(listed) >= 3, printed
    for phone in listed:
        assert Customer.objects.filter(phone_number=phone, verified_at__isnull=False).exists(), phone
    privacy = re.search(r"Privacy centre: sign in at /me/ as (\+\d+)", printed)
    assert privacy, printed
    customer = Customer.objects.get(phone_number=privacy.group(1))
    rows = {row.business.slug: row for row in customer_privacy_rows(customer=customer)}
    assert {"aurora-air", "baeckerei-kraus"} <= set(rows), rows
    assert rows["aurora-air"].messages > 0 and rows["baeckerei-kraus"].messages > 0, rows
