"""A JSON body nested deeper than Python's parser goes (it raises RecursionError, not the
ValueError of other malformed JSON) is refused as malformed, with a clear 400 — on the REST API,
the inbox's JSON endpoints and the template send — never a 500."""

from __future__ import annotations

from typing import Any

from tests.conftest import World, business_client
from tests.messaging.test_api import api_for, assert_problem


def deep(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def test_the_api_refuses_a_too_deep_body_as_malformed(world: World) -> None:
    api = api_for(world)
    single = api.post("messages", '{"to": "+4915111111111", "interactive": ' + deep() + ', "text": "x"}')
    assert_problem(single, 400, "invalid")
    assert_problem(api.post("messages/batch", deep()), 400, "invalid")
    # A merely nested body still reaches the API's own checks.
    assert_problem(api.post("messages/batch", deep(50)), 400, "invalid")


def test_the_inbox_json_endpoints_refuse_it_too(world: World) -> None:
    agent: Any = business_client(world.business_a, world.agent_a)
    notifications = agent.post("/inbox/api/notifications/", deep(), content_type="application/json")
    assert notifications.status_code == 400, notifications.content
    assert notifications.json()["error"]["code"] == "invalid"
    template = agent.post("/inbox/templates/send/", deep(), content_type="application/json")
    assert template.status_code == 400, template.content
    assert template.json()["error"]["code"] == "invalid"
