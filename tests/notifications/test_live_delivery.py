"""Batch notifications reach connected customers live, through a real server, Redis and real
Procrastinate jobs; the jobs publish only to groups somebody listens to (config.layers
`heard_only`), and a customer who was not listening gets every message on resume, in order."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from accounts.models import User
from messaging import events
from notifications import services
from tenancy.services import business_create
from tests.conftest import LiveServer, World, business_client, in_business, unique
from tests.jobs import run_queued_jobs
from tests.messaging.conftest import last_event_id, session_key
from tests.messaging.test_api import Api, make_customer
from tests.messaging.test_cross_process import open_socket, until
from tests.notifications.conftest import approved_template

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="live fan-out needs REDIS_URL")

PARAMS = {"flight": "LH 1", "time": "09:00"}


class Published:
    """Every group message published on the test's channel prefix, watched with a pattern
    subscription (PUBSUB NUMSUB does not count those, so watching makes no group heard)."""

    def __init__(self) -> None:
        layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
        self.prefix = f"{layer['CONFIG']['prefix']}__group__"
        self.redis = redis.Redis.from_url(os.environ["REDIS_URL"])
        self.pubsub = self.redis.pubsub()
        self.pubsub.psubscribe(self.prefix + "*")
        self.pubsub.get_message(timeout=2)  # the subscription's confirmation
        self.groups: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self) -> None:
        while not self.stop.is_set():
            raw = self.pubsub.get_message(timeout=0.1)
            if raw is not None and raw["type"] == "pmessage":
                self.groups.append(raw["channel"].decode()[len(self.prefix) :])

    def taken(self) -> list[str]:
        """The groups published to since the last call."""
        self.stop.wait(0.3)  # what is in flight arrives
        groups, self.groups = self.groups, []
        return groups

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pubsub.close()
        self.redis.close()


@pytest.fixture
def published() -> Iterator[Published]:
    watcher = Published()
    yield watcher
    watcher.close()


def test_a_customer_who_connects_mid_batch_gets_every_message_in_order(
    live_db: World, live_server_process: LiveServer, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = User.objects.create(email=f"{unique('owner')}@live.test")
    business = business_create(owner=owner, name="Live Air", slug=unique("live"))
    with in_business(business):
        approved_template(business, live_db.staff)
        secret = services.api_key_create(business=business, actor=owner, name="live", scopes=["send"]).secret
    api = Api(business_client(business), secret)
    # One job per notification: the batch is delivered chunk by chunk, as a large one is.
    monkeypatch.setattr(services, "BATCH_CHUNK", 1)
    customer, other = make_customer(), make_customer()  # neither has written to the business
    start = last_event_id(business)
    schema = business.schema_name

    def post(*to: Any) -> None:
        recipients = [{"to": c.phone_number, "parameters": PARAMS} for c in to]
        response = api.post("messages/batch", {"template": "flight_change", "recipients": recipients})
        assert response.status_code == 202, response.content

    # Nobody is connected: the jobs write both messages and publish nothing at all.
    post(customer, other)
    run_queued_jobs(queues=["notifications"])
    ours = [g for g in published.taken() if f"t.{schema}." in g or g.startswith("p.customer.")]
    assert ours == []
    first = last_event_id(business)
    assert first > start

    # The customer opens the chat page and /me/ mid-batch: the first message comes from the
    # stream on resume, with its durable id...
    with (
        open_socket(live_server_process, business.host, "/ws/chat/", session_key(customer=customer)) as chat,
        open_socket(live_server_process, settings.PARLEY_DOMAIN, "/ws/me/", session_key(customer=customer)) as me,
    ):
        chat.send(json.dumps({"type": "resume", "after": start}))
        replayed = until(chat, "message.created")
        assert replayed["message"]["direction"] == "out" and "LH 1" in replayed["message"]["body"]
        conversation_id = replayed["message"]["conversation_id"]
        assert until(chat, "resumed")["last"] >= replayed["id"]

        # ...and the next ones live, in order, to the chat page and to /me/, while the other
        # customer's (nobody listening) are still not published.
        post(customer, other, customer)
        run_queued_jobs(queues=["notifications"])
        live = [until(chat, "message.created") for _ in range(2)]
        assert [f["message"]["direction"] for f in live] == ["out", "out"]
        assert replayed["id"] < live[0]["id"] < live[1]["id"]
        assert {f["message"]["conversation_id"] for f in live} == {conversation_id}
        # /me/ is told of each (tagged with its send's last event: the conversation update
        # after the message).
        listed = [until(me, events.THREAD_UPDATED) for _ in range(2)]
        assert live[0]["id"] < listed[0]["id"] < live[1]["id"] < listed[1]["id"]
        # Heard now: each chunk's commit (the server has a socket of the business) and the
        # customer's /me/ updates; still not the other customer's.
        groups = [g for g in published.taken() if f"t.{schema}." in g or g.startswith("p.customer.")]
        commits, mine = events.commits_group(schema), events.customer_group(customer.pk)
        assert sorted(groups) == sorted([commits, commits, commits, mine, mine])


async def test_a_conversation_that_appears_while_the_chat_page_connects_is_read_on_resume(
    live_db: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat page learns of a first conversation from the customer's group; a template that
    creates it just after the page looked, announced before the page's subscription reached
    Redis (or unheard by it), is still read when the page resumes."""
    from django_tenants.utils import tenant_context

    from messaging.services import message_send_template
    from tests.messaging.conftest import adb, resumed, ws_connect

    business = live_db.business_a
    customer = await adb(make_customer)("Spät")
    start = await adb(last_event_id)(business)
    chat, ok, _ = await ws_connect("/ws/chat/", host=business.host, session=await adb(session_key)(customer=customer))
    assert ok

    def template_unannounced() -> None:
        with monkeypatch.context() as patch, tenant_context(business):
            patch.setattr(events, "publish_on_commit", lambda **_kwargs: None)
            patch.setattr(events, "publish_numbered_on_commit", lambda **_kwargs: None)  # the send core's
            message_send_template(
                business=business,
                customer=customer,
                template_name="flight_change",
                body="Flight LH 1 now at 09:00.",
                category="utility",
                author_key="api:0",
            )

    await adb(template_unannounced)()
    frames = await resumed(chat, start)
    assert [(f["type"], f["message"]["body"]) for f in frames if f["type"] == "message.created"] == [
        ("message.created", "Flight LH 1 now at 09:00.")
    ]
    await chat.disconnect()
