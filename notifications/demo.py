"""Demo: the airline has an approved "flight_change" template (and a marketing one in review),
an API key printed by `make demo`, and recent API traffic in its log. Idempotent."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django_tenants.utils import tenant_context

from notifications import services
from notifications.models import ApiKey, ApiRequest, Notification, Template
from template_reviews.models import TemplateReview
from template_reviews.services import template_review_approve
from tenancy.demo import DemoWorld

DEMO_KEY_PREFIX = "prl_demo0001"


def _demo_secret() -> str:
    # Stable across runs (so the printed key keeps working) yet not guessable without SECRET_KEY.
    return f"{DEMO_KEY_PREFIX}_" + hashlib.sha256(f"{settings.SECRET_KEY}:demo-api-key".encode()).hexdigest()[:40]


def seed(world: DemoWorld) -> None:
    airline = world.airline
    owner = world.users["airline_owner"]
    secret = _demo_secret()
    with tenant_context(airline):
        flight = Template.objects.filter(name="flight_change", language="en").first()
        if flight is None:
            flight = services.template_create(
                business=airline,
                actor=owner,
                content=services.template_content_clean(
                    name="flight_change",
                    language="en",
                    category="utility",
                    header="Flight {{flight}} has changed",
                    body="Hello {{name}}, your flight {{flight}} now departs at {{time}} from gate {{gate}}.",
                    footer="Aurora Air",
                    buttons=["OK, thanks", "Change my booking"],
                ),
            )
        if flight.status != Template.Status.APPROVED:
            review = TemplateReview.objects.filter(
                business=airline, template_id=flight.pk, revision=flight.revision, status=TemplateReview.Status.PENDING
            ).first()
            if review is not None:
                template_review_approve(review=review, reviewer=world.staff)
        if not Template.objects.filter(name="spring_sale").exists():
            services.template_create(
                business=airline,
                actor=owner,
                content=services.template_content_clean(
                    name="spring_sale",
                    language="en",
                    category="marketing",
                    body="Spring sale: flights to {{city}} from {{price}}. Book by Sunday!",
                    buttons=["Show me"],
                ),
            )
        key = ApiKey.objects.filter(prefix=DEMO_KEY_PREFIX).first()
        if key is None:
            key = ApiKey.objects.create(
                name="Booking system (demo)",
                prefix=DEMO_KEY_PREFIX,
                key_hash=services.api_key_hash(secret),
                scopes=["read", "send"],
                created_by=owner,
            )
        if not Notification.objects.exists():
            customers = list(world.customers.values())[:2]
            for customer, (flight_no, time, gate) in zip(
                customers, [("AU 412", "10:40", "B22"), ("AU 207", "18:05", "C3")], strict=False
            ):
                request = services.send_request_clean(
                    to=customer.phone_number,
                    template={
                        "name": "flight_change",
                        "language": "en",
                        "parameters": {
                            "name": customer.display_name.split(" ")[0] or "there",
                            "flight": flight_no,
                            "time": time,
                            "gate": gate,
                        },
                    },
                )
                services.notification_send(business=airline, api_key=key, request=request)
                services.api_request_record(key=key, method="POST", path="/api/v1/messages", status_code=201)
            services.api_request_record(key=key, method="GET", path="/api/v1/templates", status_code=200)
            services.api_request_record(
                key=key, method="GET", path="/api/v1/messages/999", status_code=404, error_code="not_found"
            )
        traffic = ApiRequest.objects.count()
    world.lines.append(f"API (airline): key {secret}  ({traffic} requests in its log)")
    # To a demo customer, so the example is delivered when tried (any other number is refused:
    # not a Parley customer).
    example = next(iter(world.customers.values()))
    payload = {
        "to": example.phone_number,
        "template": {
            "name": "flight_change",
            "parameters": {
                "name": example.display_name.split(" ")[0] or "there",
                "flight": "AU 412",
                "time": "10:40",
                "gate": "B22",
            },
        },
    }
    world.lines.append(
        f"    curl -X POST {airline.absolute_url('/api/v1/messages')} -H 'Authorization: Bearer {secret}' "
        f"-H 'Content-Type: application/json' -d '{json.dumps(payload, ensure_ascii=False)}'"
    )
    world.lines.append(f"    API docs: {airline.absolute_url('/api/v1/docs/')}")
