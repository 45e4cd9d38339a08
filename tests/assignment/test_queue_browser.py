"""Issue 12's "Done when" in a browser: two agents, auto-assignment on with capacity 1, three
customers write; each agent sees only what the rules give them; the third customer's chat page
shows "1st in line". The last part (a note with an @mention reaches the other agent live) needs
lane collab12's mentions: `test_done_when_a_mention_reaches_the_other_agent_live` is its hook."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context
from playwright.sync_api import expect

from accounts.models import Customer
from assignment.models import AgentStatus, AssignmentSettings
from messaging.models import Conversation
from tests.assignment.conftest import Team, make_team
from tests.conftest import LiveServer, World
from tests.messaging.conftest import make_customer, session_key
from tests.messaging.test_browser import signed_in_page


def wait_for[T](read: Callable[[], T], ok: Callable[[T], bool], timeout: float = 15) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@dataclass
class Scene:
    team: Team
    server: LiveServer
    agent_pages: list[Any]
    customers: list[Customer]
    customer_pages: list[Any]
    conversations: list[int]


@pytest.fixture
def scene(live_db: World, live_server_process: LiveServer, browser: Any) -> Iterator[Scene]:
    """Two agents with their inboxes open, capacity 1 and round robin on; three customers write
    one after the other. The first two are served, the third waits."""
    team = make_team(agents=2)
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=1)
    contexts = []
    try:
        agent_pages = []
        for agent in team.agents:
            context, page = signed_in_page(browser, session_key(user=agent))
            contexts.append(context)
            page.goto(live_server_process.business_url(team.business, "/inbox/"))
            agent_pages.append(page)

        def statuses() -> set[str]:
            with schema_context(team.business.schema_name):
                return set(AgentStatus.objects.filter(user__in=team.agents).values_list("status", flat=True)) | (
                    {"missing"} if AgentStatus.objects.filter(user__in=team.agents).count() < 2 else set()
                )

        # Opening the inbox makes an agent online (no status chosen yet).
        assert wait_for(statuses, lambda s: s == {"online"}) == {"online"}

        customers = [make_customer(f"Fahrgast {n}") for n in (1, 2, 3)]
        customer_pages, conversations = [], []
        for index, customer in enumerate(customers):
            context, page = signed_in_page(browser, session_key(customer=customer))
            contexts.append(context)
            page.goto(live_server_process.business_url(team.business, "/chat/"))
            page.get_by_role("textbox", name="Message").fill(f"Hello, I am customer {index + 1}")
            page.keyboard.press("Enter")
            customer_pages.append(page)

            def conversation(customer: Customer = customer) -> Conversation | None:
                with schema_context(team.business.schema_name):
                    return Conversation.objects.filter(contact__customer=customer).first()

            found = wait_for(conversation, lambda c: c is not None)
            assert found is not None
            conversations.append(found.pk)
        connection.set_schema_to_public()
        yield Scene(team, live_server_process, agent_pages, customers, customer_pages, conversations)
    finally:
        for context in contexts:
            context.close()
        connection.set_schema_to_public()


@pytest.mark.browser
def test_done_when_two_agents_capacity_one_three_customers(scene: Scene) -> None:
    team, (first, second) = scene.team, scene.team.agents
    one, two, three = scene.conversations

    def holders() -> list[int | None]:
        with schema_context(team.business.schema_name):
            rows = dict(Conversation.objects.filter(pk__in=scene.conversations).values_list("pk", "assignee_id"))
        return [rows[pk] for pk in scene.conversations]

    # Round robin with capacity 1: one each, the third waits in the queue.
    assert wait_for(holders, lambda h: h == [first.pk, second.pk, None]) == [first.pk, second.pk, None]

    # The third customer's page says where they are in line.
    expect(scene.customer_pages[2].locator("#chat-queue")).to_contain_text("1st in line")
    # The served customers are not in line.
    assert scene.customer_pages[0].locator("#chat-queue").is_hidden()

    # Each agent's "Mine" holds exactly what the rules gave them, live.
    for page, mine, others in ((scene.agent_pages[0], one, (two, three)), (scene.agent_pages[1], two, (one, three))):
        page.get_by_role("tab", name="Mine").click()
        expect(page.locator(f'#conv-list [data-conversation="{mine}"]')).to_be_visible()
        for other in others:
            expect(page.locator(f'#conv-list [data-conversation="{other}"]')).to_have_count(0)
    # The queue tab shows the waiting one to both.
    for page in scene.agent_pages:
        page.get_by_role("tab", name="Queue").click()
        expect(page.locator(f'#conv-list [data-conversation="{three}"]')).to_be_visible()
        expect(page.locator(f'#conv-list [data-conversation="{one}"]')).to_have_count(0)

    # The first agent resolves: the waiting customer is served at once, and their page says so.
    page = scene.agent_pages[0]
    page.get_by_role("tab", name="Mine").click()
    page.locator(f'#conv-list [data-conversation="{one}"]').click()
    page.locator("#btn-resolve").click()
    assert wait_for(holders, lambda h: h[2] == first.pk)[2] == first.pk
    expect(scene.customer_pages[2].locator("#chat-queue")).to_be_hidden()
    expect(page.locator(f'#conv-list [data-conversation="{three}"]')).to_be_visible()
    # The thread narrates what happened.
    page.locator(f'#conv-list [data-conversation="{three}"]').click()
    expect(page.locator("#thread .activity")).to_contain_text("automatically")


def mention_step(scene: Scene) -> None:
    """The first agent writes an internal note mentioning the second by name in the first
    customer's conversation; it reaches the second agent live: their bell counts it and lists
    it, without a reload. (The "@" suggestions are driven in tests/collab/test_browser.py.)"""
    first_page, second_page = scene.agent_pages
    handle = scene.team.agents[1].get_short_name()
    # A new load (a hash change alone does not reopen the page's conversation).
    first_page.goto(scene.server.business_url(scene.team.business, f"/inbox/#c{scene.conversations[0]}"))
    first_page.reload()
    expect(first_page.locator("#thread")).to_contain_text("customer 1")
    first_page.locator("#composer-note").check()
    box = first_page.locator("#composer-body")
    box.fill(f"Kannst du übernehmen, @{handle}?")
    box.press("Enter")
    expect(second_page.locator("#bell-count")).to_have_text("1")
    second_page.locator("#bell").click()
    expect(second_page.locator("#bell-pop")).to_contain_text(scene.team.agents[0].get_short_name())


@pytest.mark.browser
def test_done_when_a_mention_reaches_the_other_agent_live(scene: Scene) -> None:
    mention_step(scene)
