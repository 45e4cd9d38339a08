"""The REST API /api/v1/: every endpoint and error code, tenant isolation, idempotency,
delivery rules and the price in the answer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from accounts.models import Customer
from billing.models import UsageRecord
from customers.services import customer_block, customer_mute_marketing
from messaging.models import Message
from messaging.services import message_send_customer
from notifications import services
from notifications.models import ApiRequest, Notification, Template
from tests.conftest import World, business_client, fresh_mobile, in_business
from tests.notifications.conftest import approved_template


def make_customer(name: str = "Kim") -> Customer:
    return Customer.objects.create(
        phone_number=fresh_mobile(), display_name=name, country_code="DE", verified_at=timezone.now()
    )


class Api:
    def __init__(self, client: Client, secret: str) -> None:
        self.client = client
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def get(self, path: str, **extra: Any) -> Any:
        return self.client.get(f"/api/v1/{path}", **self.auth, **extra)

    def post(self, path: str, data: Any, **extra: Any) -> Any:
        return self.client.post(f"/api/v1/{path}", data, content_type="application/json", **self.auth, **extra)


def api_for(world: World, business: Any = None, scopes: list[str] | None = None) -> Api:
    business = business or world.business_a
    owner = world.owner_a if business == world.business_a else world.owner_b
    with in_business(business):
        created = services.api_key_create(
            business=business, actor=owner, name="test", scopes=scopes or ["send", "read"]
        )
    return Api(business_client(business), created.secret)


@pytest.fixture
def api(world: World) -> Api:
    return api_for(world)


@pytest.fixture
def flight(world: World) -> Template:
    with in_business(world.business_a):
        return approved_template(world.business_a, world.staff)


def send_flight(api: Api, to: str, **extra: Any) -> Any:
    return api.post(
        "messages",
        {"to": to, "template": {"name": "flight_change", "parameters": {"flight": "LH 123", "time": "14:05"}}},
        **extra,
    )


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["title"] and body["status"] == status
    return body


def test_send_an_approved_template_with_its_price(world: World, api: Api, flight: Template) -> None:
    customer = make_customer()
    response = send_flight(api, customer.phone_number)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "sent" and body["failure"] is None
    assert body["template"] == "flight_change" and body["category"] == "utility"
    record = UsageRecord.objects.get(business=world.business_a, customer_id=customer.pk)
    assert Decimal(body["price"]["amount"]) == record.unit_price > 0
    assert body["price"]["per"] == "conversation"
    with in_business(world.business_a):
        message = Message.objects.get(pk=body["message_id"])
        assert message.kind == Message.Kind.TEMPLATE and message.author_kind == Message.Author.API
        assert message.body.startswith("Flight LH 123\n\nYour flight LH 123 now leaves at 14:05.")
    # A second template inside the open conversation costs nothing more.
    second = send_flight(api, customer.phone_number).json()
    assert Decimal(second["price"]["amount"]) == 0
    assert UsageRecord.objects.filter(business=world.business_a, customer_id=customer.pk).count() == 1


def test_message_detail_has_a_status_timeline(world: World, api: Api, flight: Template) -> None:
    customer = make_customer()
    sent = send_flight(api, customer.phone_number).json()
    from messaging.services import messages_mark_by_customer

    with in_business(world.business_a):
        messages_mark_by_customer(business=world.business_a, customer=customer, up_to=sent["message_id"], read=False)
    detail = api.get(f"messages/{sent['id']}").json()
    assert detail["status"] == "delivered"
    assert [step["status"] for step in detail["timeline"]] == ["accepted", "sent", "delivered"]
    assert_problem(api.get("messages/999999"), 404, "not_found")


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"to": "0151 1234", "template": {"name": "flight_change"}}, 400, "invalid_phone"),
        ({"to": "+49"}, 400, "invalid"),
        ({"to": "+4915112345678", "template": {"name": "nope"}}, 404, "not_found"),
        ({"to": "+4915112345678", "template": {"name": "flight_change"}}, 400, "missing_parameter"),
        (
            {
                "to": "+4915112345678",
                "template": {"name": "flight_change", "parameters": {"flight": "1", "time": "2", "gate": "3"}},
            },
            400,
            "unknown_parameter",
        ),
    ],
)
def test_bad_sends_are_problems(api: Api, flight: Template, payload: dict[str, Any], status: int, code: str) -> None:
    assert_problem(api.post("messages", payload), status, code)


@pytest.mark.parametrize(
    "body",
    [
        # Numbers are no text (DRF's CharField made 1e400 the body "inf").
        '{"to": "+4915112345678", "text": 1e400}',
        '{"to": "+4915112345678", "text": 12}',
        '{"to": 4915112345678, "text": "hi"}',
        # A parameter of NULs alone is blank (it was sent, and billed, as one); 1e400 is no value.
        '{"to": "+4915112345678", "template": {"name": "flight_change", "parameters": {"flight": "\\u0000", "time": "2"}}}',
        '{"to": "+4915112345678", "template": {"name": "flight_change", "parameters": {"flight": 1e400, "time": "2"}}}',
    ],
)
def test_values_of_the_wrong_kind_are_refused(world: World, api: Api, flight: Template, body: str) -> None:
    with in_business(world.business_a):
        before = Message.objects.count()
    assert_problem(api.post("messages", body), 400, "invalid")
    with in_business(world.business_a):
        assert Message.objects.count() == before  # nothing sent


def test_unapproved_template_cannot_be_sent(world: World, api: Api) -> None:
    with in_business(world.business_a):
        from tests.notifications.conftest import template_content

        services.template_create(business=world.business_a, actor=None, content=template_content(name="draft_one"))
    response = api.post(
        "messages",
        {
            "to": make_customer().phone_number,
            "template": {"name": "draft_one", "parameters": {"flight": "1", "time": "2"}},
        },
    )
    assert_problem(response, 422, "template_not_approved")


def test_not_a_customer_and_blocked_fail_unbilled(world: World, api: Api, flight: Template) -> None:
    stranger = send_flight(api, fresh_mobile()).json()
    assert stranger["status"] == "failed" and stranger["failure"]["code"] == "not_a_customer"
    blocker = make_customer()
    customer_block(customer=blocker, business=world.business_a)
    blocked = send_flight(api, blocker.phone_number).json()
    assert blocked["status"] == "failed" and blocked["failure"]["code"] == "blocked"
    assert Decimal(blocked["price"]["amount"]) == 0
    assert not UsageRecord.objects.filter(business=world.business_a, customer_id=blocker.pk).exists()
    with in_business(world.business_a):
        assert not Message.objects.filter(conversation__contact__customer=blocker).exists()


def test_muted_customer_never_receives_nor_pays_for_marketing(world: World, api: Api) -> None:
    with in_business(world.business_a):
        approved_template(
            world.business_a, world.staff, name="sale", category="marketing", header="", body="Sale! {{pct}} off"
        )
    customer = make_customer()
    customer_mute_marketing(customer=customer, business=world.business_a)
    response = api.post(
        "messages", {"to": customer.phone_number, "template": {"name": "sale", "parameters": {"pct": "20%"}}}
    )
    body = response.json()
    assert body["status"] == "failed" and body["failure"]["code"] == "muted_marketing"
    assert not UsageRecord.objects.filter(business=world.business_a, customer_id=customer.pk).exists()
    with in_business(world.business_a):
        assert not Message.objects.filter(conversation__contact__customer=customer).exists()
    # Utility still arrives: the mute is about marketing only.
    with in_business(world.business_a):
        approved_template(world.business_a, world.staff)
    assert send_flight(api, customer.phone_number).json()["status"] == "sent"


def test_free_text_only_inside_the_service_window(world: World, api: Api) -> None:
    customer = make_customer()
    closed = api.post("messages", {"to": customer.phone_number, "text": "Hello"}).json()
    assert closed["status"] == "failed" and closed["failure"]["code"] == "window_closed"
    with in_business(world.business_a):
        message_send_customer(business=world.business_a, customer=customer, body="Where is my parcel?")
    opened = api.post("messages", {"to": customer.phone_number, "text": "On its way!"}).json()
    assert opened["status"] == "sent" and opened["category"] == "service"
    # Stored as what it is: free text from the API, not a template; the reply opened a service
    # conversation (the first 1,000 a month are free) and left the customer's message unread
    # for the agents (a system answered, no person read it).
    assert opened["template"] == "" and opened["price"] == {
        "amount": "0.0000",
        "currency": "EUR",
        "per": "conversation",
    }
    with in_business(world.business_a):
        message = Message.objects.get(pk=opened["message_id"])
        assert message.kind == Message.Kind.TEXT and message.template_name == ""
        assert message.author_kind == Message.Author.API and message.direction == Message.Direction.OUTBOUND
        assert message.body == "On its way!"
        inbound = Message.objects.get(conversation_id=message.conversation_id, direction="in")
        assert inbound.status != Message.Status.READ
        assert message.conversation.unread_count == 1
    [record] = UsageRecord.objects.filter(business=world.business_a, customer_id=customer.pk)
    assert record.category == "service" and record.unit == "conversation"
    both = api.post("messages", {"to": customer.phone_number, "text": "x", "template": {"name": "a"}})
    assert_problem(both, 400, "invalid")


def test_free_text_to_a_customer_who_never_wrote_creates_nothing(world: World, api: Api) -> None:
    customer = make_customer()
    closed = api.post("messages", {"to": customer.phone_number, "text": "Hello"}).json()
    assert closed["status"] == "failed" and closed["failure"]["code"] == "window_closed"
    with in_business(world.business_a):
        assert not Message.objects.filter(conversation__contact__customer=customer).exists()
        from messaging.models import Conversation

        assert not Conversation.objects.filter(contact__customer=customer).exists()
    assert not UsageRecord.objects.filter(business=world.business_a, customer_id=customer.pk).exists()


def test_idempotency_key_gives_the_same_answer_once(world: World, api: Api, flight: Template) -> None:
    customer = make_customer()
    first = send_flight(api, customer.phone_number, HTTP_IDEMPOTENCY_KEY="order-42")
    again = send_flight(api, customer.phone_number, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again["Idempotent-Replayed"] == "true"
    with in_business(world.business_a):
        assert Notification.objects.filter(to=customer.phone_number).count() == 1
    other = api.post("messages", {"to": customer.phone_number, "text": "hi"}, HTTP_IDEMPOTENCY_KEY="order-42")
    assert_problem(other, 422, "idempotency_mismatch")
    # A refusal is an answer too: replayed, not re-evaluated.
    bad = api.post("messages", {"to": "nope"}, HTTP_IDEMPOTENCY_KEY="bad-1")
    assert_problem(
        api.post("messages", {"to": "nope"}, HTTP_IDEMPOTENCY_KEY="bad-1"), bad.status_code, bad.json()["code"]
    )


def test_authentication_errors(world: World, api: Api) -> None:
    client = business_client(world.business_a)
    missing = client.get("/api/v1/templates")
    assert_problem(missing, 401, "unauthorized")
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert_problem(client.get("/api/v1/templates", HTTP_AUTHORIZATION="Basic abc"), 401, "unauthorized")
    assert_problem(client.get("/api/v1/templates", HTTP_AUTHORIZATION="Bearer prl_0000_x"), 401, "unauthorized")
    read_only = api_for(world, scopes=["read"])
    assert_problem(read_only.post("messages", {"to": "+4915112345678", "text": "x"}), 403, "forbidden")


def test_a_key_of_business_a_is_unknown_on_business_b(world: World, api: Api, flight: Template) -> None:
    on_b = Api(business_client(world.business_b), api.auth["HTTP_AUTHORIZATION"].split()[1])
    for path in ("templates", "conversations", "events?after=0", "messages/1"):
        assert_problem(on_b.get(path), 401, "unauthorized")
    # B's own key sees none of A's data.
    b = api_for(world, world.business_b)
    customer = make_customer()
    sent = send_flight(api, customer.phone_number).json()
    assert sent["status"] == "sent"
    assert b.get("templates").json()["templates"] == []
    assert_problem(b.get(f"messages/{sent['id']}"), 404, "not_found")
    phones_b = [c["contact"]["phone"] for c in b.get("conversations").json()["conversations"]]
    assert customer.phone_number not in phones_b
    # And B cannot send A's template.
    assert_problem(send_flight(b, make_customer().phone_number), 404, "not_found")


def test_templates_list_and_create(world: World, api: Api, flight: Template) -> None:
    listing = api.get("templates").json()["templates"]
    assert [(t["name"], t["status"], t["placeholders"]) for t in listing] == [
        ("flight_change", "approved", ["flight", "time"])
    ]
    created = api.post(
        "templates",
        {"name": "gate_change", "language": "en", "category": "utility", "body": "Gate {{gate}}"},
        HTTP_IDEMPOTENCY_KEY="tpl-1",
    )
    assert created.status_code == 201 and created.json()["status"] == "pending"
    duplicate = api.post("templates", {"name": "gate_change", "language": "en", "category": "utility", "body": "G"})
    assert_problem(duplicate, 409, "duplicate")
    invalid = api.post("templates", {"name": "Bad Name", "language": "en", "category": "utility", "body": "x"})
    assert_problem(invalid, 400, "invalid")
    assert_problem(api.post("templates", {"name": "x"}), 400, "invalid")


def test_conversations_messages_and_events(world: World, api: Api, flight: Template) -> None:
    customer = make_customer()
    start = api.get("events?after=0").json()
    after = start["next_after"]
    while start["has_more"]:
        start = api.get(f"events?after={after}").json()
        after = start["next_after"]
    sent = send_flight(api, customer.phone_number).json()
    conversations = api.get("conversations").json()["conversations"]
    assert conversations[0]["id"] == sent["conversation_id"]
    assert conversations[0]["contact"]["phone"] == customer.phone_number
    messages = api.get(f"conversations/{sent['conversation_id']}/messages").json()["messages"]
    assert [m["id"] for m in messages] == [sent["message_id"]]
    events = api.get(f"events?after={after}").json()
    types = [e["type"] for e in events["events"]]
    assert types == ["message.created", "conversation.updated"]
    ids = [e["id"] for e in events["events"]]
    assert ids == list(range(after + 1, after + 1 + len(ids)))  # gap-free
    assert events["events"][0]["data"]["message"]["id"] == sent["message_id"]
    assert api.get(f"events?after={events['next_after']}").json()["events"] == []
    assert_problem(api.get("events?after=abc"), 400, "invalid")
    assert_problem(api.get("conversations/999999/messages"), 404, "not_found")


def test_every_request_is_logged_against_its_key(world: World, api: Api) -> None:
    api.get("templates")
    api.get("messages/12345")
    with in_business(world.business_a):
        rows = list(ApiRequest.objects.order_by("id").values_list("method", "path", "status_code", "error_code"))
    assert rows[-2:] == [("GET", "/api/v1/templates", 200, ""), ("GET", "/api/v1/messages/12345", 404, "not_found")]


def test_openapi_schema_and_docs_are_served_without_a_key(world: World) -> None:
    client = business_client(world.business_a)
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert {"/api/v1/messages", "/api/v1/messages/batch", "/api/v1/events", "/api/v1/templates"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    docs = client.get("/api/v1/docs/")
    html = docs.content.decode()
    assert docs.status_code == 200 and "swagger-ui" in html
    assert "cdn" not in html.lower() and "/static/drf_spectacular_sidecar/" in html
    # Swagger UI styles itself inline (allowed on this page only); its scripts stay strict.
    policy = dict(
        directive.strip().split(" ", 1) for directive in docs["Content-Security-Policy"].split(";") if directive.strip()
    )
    assert "'unsafe-inline'" in policy["style-src"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    other = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert "'unsafe-inline'" not in other.get("Content-Security-Policy", "")


def test_an_unknown_api_path_is_a_problem_not_a_web_page(world: World, api: Api) -> None:
    body = assert_problem(api.get("nonexistent"), 404, "not_found")
    assert "/api/v1/nonexistent" in body["title"]
    # The most common slip, a trailing slash, is named with the path that exists.
    slash = assert_problem(api.post("messages/", {"to": "+4915112345678", "text": "hi"}), 404, "not_found")
    assert "no trailing slash: /api/v1/messages" in slash["title"]
    assert_problem(api.client.get("/api/v1/nonexistent"), 404, "not_found")  # without a key too
    # The known paths are unaffected.
    assert api.get("templates").status_code == 200


def test_a_body_too_large_to_read_is_a_413_problem_and_sends_nothing(world: World, api: Api, flight: Template) -> None:
    """Past DATA_UPLOAD_MAX_MEMORY_SIZE Django will not read a body: the client gets the API's
    own problem (before: Django's HTML "Bad Request" page), logged against its key."""
    customer = make_customer()
    with in_business(world.business_a):
        before = Notification.objects.count()
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=2048):
        body = assert_problem(api.post("messages", {"to": customer.phone_number, "text": "x" * 4000}), 413, "too_large")
    assert "2.0" in body["title"] and "/api/v1/media" in body["title"], body
    with in_business(world.business_a):
        assert Notification.objects.count() == before
        assert ApiRequest.objects.filter(status_code=413, error_code="too_large").exists()


def test_a_method_an_endpoint_does_not_take_is_a_405_problem_naming_what_it_takes(api: Api) -> None:
    response = api.get("consents")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]
