"""The dashboard Overview shows the business's real figures, and the landing page promises only
what works."""

from __future__ import annotations

import re

from django_tenants.utils import tenant_context

from messaging.services import message_send_agent, message_send_customer
from tests.conftest import World, business_client, public_client
from tests.messaging.conftest import make_customer


def figures(html: str, section: str) -> list[str]:
    card = re.search(rf'data-section="{section}">(.*?)</a>', html, re.S)
    assert card, f"no {section} card"
    return re.findall(r"<li>(.*?)</li>", card.group(1))


def number(line: str) -> int:
    match = re.match(r"€?([\d,.]+)", line)
    assert match, line
    return int(match.group(1).replace(",", "").replace(".", ""))


def test_overview_cards_show_real_counts_not_placeholders(world: World) -> None:
    client = business_client(world.business_a, world.owner_a)
    before = client.get("/").content.decode()
    with tenant_context(world.business_a):
        sent = [
            message_send_customer(business=world.business_a, customer=make_customer(name), body="Hallo!").message
            for name in ("Ada", "Ben")
        ]
    html = client.get("/").content.decode()
    assert "will appear here" not in html and "will be shown here" not in html

    inbox_before, inbox = figures(before, "inbox"), figures(html, "inbox")
    assert [line.split(" ", 1)[1] for line in inbox] == [
        "open conversations",
        "waiting for a reply",
        "messages today",
    ]
    assert [number(line) for line in inbox] == [number(line) + 2 for line in inbox_before]
    assert number(figures(html, "contacts")[0]) == number(figures(before, "contacts")[0]) + 2
    # A business reply opens a billable conversation.
    with tenant_context(world.business_a):
        for message in sent:
            message_send_agent(
                business=world.business_a, user=world.agent_a, conversation_id=message.conversation_id, body="Gern!"
            )
    billing = figures(client.get("/").content.decode(), "billing")
    assert billing[0].endswith("billable conversations this month")
    assert number(billing[0]) == number(figures(before, "billing")[0]) + 2
    assert billing[1].startswith("€") and billing[1].endswith("so far (before tax)")
    assert figures(html, "team") == ["2 people with a seat"]  # the owner and the agent
    assert figures(html, "verification")[-1].startswith("Badge:")


def test_agents_see_the_inbox_figures_but_not_billing(world: World) -> None:
    html = business_client(world.business_a, world.agent_a).get("/").content.decode()
    assert figures(html, "inbox")
    assert 'data-section="billing"' not in html and "billable" not in html


def test_overview_in_german(world: World) -> None:
    html = business_client(world.business_b, world.owner_b).get("/", HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert figures(html, "inbox")[0].endswith("offene Unterhaltungen") or figures(html, "inbox")[0].endswith(
        "offene Unterhaltung"
    )
    assert figures(html, "team") == ["2 Personen mit Zugang"]


def test_landing_page_promises_only_what_works(world: World) -> None:
    html = public_client().get("/").content.decode()
    assert "labels" not in html.lower()
    assert "API" not in html and "webhook" not in html.lower()
    assert '/me/">' in html  # customers find their way in
