"""Service cycles (kept by triggers), the Reports page's figures, SLA warnings, the CSAT survey
and the Overview's live figures."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.test import Client
from django.utils import timezone

from collab import services as collab_services
from customers.session import SESSION_KEY as CUSTOMER_SESSION_KEY
from insights import selectors
from insights.models import CsatResponse, Cycle, InsightSettings
from messaging.models import Conversation
from messaging.services import conversation_assign, conversation_set_status
from tenancy.services import business_create
from tests.collab.helpers import agent_writes, at, customer_writes
from tests.conftest import World, business_client, in_business
from tests.messaging.conftest import make_customer

BERLIN = ZoneInfo("Europe/Berlin")


def _t(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


def _resolve(world: World, conversation: Conversation, user: Any = None) -> None:
    conversation_set_status(
        business=world.business_a, user=user or world.agent_a, conversation_id=conversation.pk, status="resolved"
    )


def test_cycles_follow_messages_and_resolutions(world: World) -> None:
    with in_business(world.business_a):
        customer = make_customer("Elif Yilmaz")
        with at(_t(10, 9)):
            conversation = customer_writes(world.business_a, "Hello", customer=customer)
        with at(_t(10, 9, 2)):
            customer_writes(world.business_a, "Anyone there?", customer=customer)
        with at(_t(10, 9, 3)):
            agent_writes(world.business_a, world.agent_a, conversation, "Internal: check", kind="note")
        with at(_t(10, 9, 7)):
            agent_writes(world.business_a, world.agent_a, conversation, "Yes, how can I help?")
        with at(_t(10, 9, 9)):
            agent_writes(world.business_a, world.agent_a, conversation, "Second reply")
        with at(_t(10, 10)):
            conversation_assign(
                business=world.business_a,
                user=world.agent_a,
                conversation_id=conversation.pk,
                assignee_id=world.agent_a.pk,
            )
            _resolve(world, conversation)
        with at(_t(11, 8)):
            customer_writes(world.business_a, "One more question", customer=customer)
        first, second = Cycle.objects.filter(conversation=conversation).order_by("started_at")
        assert first.started_at == _t(10, 9) and first.first_response_at == _t(10, 9, 7)
        assert first.first_responder_id == world.agent_a.pk  # the note did not count, the second reply neither
        assert first.resolved_at == _t(10, 10) and first.resolver_id == world.agent_a.pk
        assert second.started_at == _t(11, 8) and second.first_response_at is None and second.resolved_at is None


def test_report_figures_per_day_agent_and_label(world: World) -> None:
    with in_business(world.business_a):
        label = collab_services.label_create(
            business=world.business_a, user=world.owner_a, name="Baggage", colour="orange"
        )
        conversations = []
        # Day 10: two conversations, answered after 4 and 10 minutes; one resolved after 2 hours.
        for minute, reply_after in ((0, 4), (30, 10)):
            with at(_t(10, 9, minute)):
                conversation = customer_writes(world.business_a, "Where is my bag?")
            with at(_t(10, 9, minute + reply_after)):
                agent_writes(world.business_a, world.agent_a, conversation, "Looking")
            conversations.append(conversation)
        with at(_t(10, 11)):
            conversation_assign(
                business=world.business_a,
                user=world.owner_a,
                conversation_id=conversations[0].pk,
                assignee_id=world.agent_a.pk,
            )
            _resolve(world, conversations[0])
        # Day 11: one conversation nobody answered.
        with at(_t(11, 12)):
            conversations.append(customer_writes(world.business_a, "Hello?"))
        collab_services.conversation_labels_set(
            business=world.business_a, user=world.agent_a, conversation_id=conversations[0].pk, label_ids=[label.pk]
        )
        with at(_t(11, 18)):
            report = selectors.report(business=world.business_a, start=date(2026, 3, 10), end=date(2026, 3, 11))
    days = {row.day.day: row for row in report.days}
    assert (days[10].new, days[10].resolved, days[10].backlog) == (2, 1, 1)
    assert (days[11].new, days[11].resolved, days[11].backlog) == (1, 0, 2)
    assert days[10].median_first_response == 7 * 60  # of 4 and 10 minutes
    assert report.new == 3 and report.resolved == 1 and report.backlog == 2 and report.unanswered == 1
    assert report.median_first_response == 7 * 60 and report.median_resolution == 2 * 3600
    agent = next(row for row in report.agents if row.key == world.agent_a.pk)
    assert (agent.first_responses, agent.median_first_response, agent.resolved) == (2, 7 * 60, 1)
    baggage = next(row for row in report.labels if row.key == label.pk)
    assert (baggage.conversations, baggage.first_responses, baggage.resolved) == (1, 1, 1)
    assert baggage.median_first_response == 4 * 60 and baggage.median_resolution == 2 * 3600


def test_reports_page_renders_numbers_unlocalized_in_the_charts(world: World) -> None:
    with in_business(world.business_a):
        conversation = customer_writes(world.business_a, "Hi")
        agent_writes(world.business_a, world.agent_a, conversation, "Hello")
    client = business_client(world.business_a, world.agent_a)
    client.cookies["django_language"] = "de"
    page = client.get("/reports/?days=7", HTTP_ACCEPT_LANGUAGE="de")
    text = page.content.decode()
    assert page.status_code == 200
    assert "Berichte" in text or "Reports" in text
    # SVG coordinates never get a decimal comma
    import re

    for value in re.findall(r'<rect x="([^"]+)" y="([^"]+)" width="([^"]+)" height="([^"]+)"', text):
        for number in value:
            float(number)
    assert client.get("/reports/?days=abc").status_code == 200
    # agents read the targets; only managers change them
    client.post("/reports/", {"first_response_minutes": "5"})
    with in_business(world.business_a):
        assert selectors.settings_get().first_response_minutes is None


def _volume_svg(page: str) -> tuple[list[float], list[tuple[float, str]]]:
    import re

    svg = page.split('aria-labelledby="volume-h"', 1)[1].split("</svg>", 1)[0]
    viewbox = [float(n) for n in re.search(r'viewBox="([^"]+)"', svg).group(1).split()]  # type: ignore[union-attr]
    ticks = [(float(x), label) for x, label in re.findall(r'<text x="([^"]+)"[^>]*>([^<]+)</text>', svg)]
    return viewbox, ticks


def _german(client: Client, path: str) -> str:
    from django.utils import translation

    try:
        return client.get(path, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    finally:
        translation.deactivate()  # the request activated German on this thread


def test_reports_of_a_new_business_say_there_is_nothing_yet(world: World) -> None:
    """A business without conversations: no "Tallest bar: 1 conversations" (the peaks were at
    least 1, and the plural fixed), and the first day's label inside the chart ("' Nov")."""
    business = business_create(owner=world.owner_a, name="Empty Reports", slug="empty-reports")
    client = business_client(business, world.owner_a)
    for days in (7, 30, 90):
        page = client.get(f"/reports/?days={days}").content.decode()
        assert "Tallest bar" not in page and "peaks at" not in page
        assert "No conversations in this period yet." in page
        (min_x, _top, width, _height), ticks = _volume_svg(page)
        assert ticks
        for x, label in ticks:
            # font-size 10: a generous 6 units a character, centred on x
            half = len(label) * 3
            assert x - half >= min_x and x + half <= min_x + width, (days, x, label, min_x, width)
    assert "In diesem Zeitraum gibt es noch keine Unterhaltungen." in _german(client, "/reports/")
    with in_business(business):
        customer_writes(business, "Hello")
    page = client.get("/reports/").content.decode()
    assert "Tallest bar: 1 conversation; the backlog line peaks at 1." in page
    assert "Höchster Balken: 1 Unterhaltung; die Rückstandslinie erreicht höchstens 1." in _german(client, "/reports/")


def test_sla_breach_warnings(world: World) -> None:
    owner = business_client(world.business_a, world.owner_a)
    assert owner.post("/reports/", {"first_response_minutes": "0"}).status_code == 302
    with in_business(world.business_a):
        assert selectors.settings_get().first_response_minutes is None  # refused: out of range
    owner.post("/reports/", {"first_response_minutes": "15", "resolution_hours": "8"})
    now = timezone.now()
    with in_business(world.business_a):
        assert InsightSettings.objects.get().first_response_minutes == 15
        with at(now - timedelta(minutes=20)):
            late = customer_writes(world.business_a, "Still waiting")
        with at(now - timedelta(minutes=5)):
            fresh = customer_writes(world.business_a, "Just asked")
        with at(now - timedelta(minutes=30)):
            answered = customer_writes(world.business_a, "Answered")
        with at(now - timedelta(minutes=29)):
            agent_writes(world.business_a, world.agent_a, answered, "Sure")
        with at(now):
            states = selectors.sla_states(conversation_ids=[late.pk, fresh.pk, answered.pk])
            assert states[late.pk].kind == "first_response" and states[late.pk].breached
            assert states[fresh.pk].kind == "first_response" and not states[fresh.pk].breached
            assert states[answered.pk].kind == "resolution" and not states[answered.pk].breached
            assert selectors.sla_breached_count() == 1
    agent = business_client(world.business_a, world.agent_a)
    data = agent.get(f"/inbox/api/sla/?conversations={late.pk},{fresh.pk}").json()
    assert data["states"][str(late.pk)]["breached"] is True and data["breached"] == 1
    with in_business(world.business_a):
        _resolve(world, late)
        assert selectors.sla_breached_count() == 0


def _customer_client(world: World, customer: Any) -> Client:
    client = business_client(world.business_a)
    session = client.session
    session[CUSTOMER_SESSION_KEY] = customer.pk
    session.save()
    return client


def test_csat_survey_after_resolve(world: World) -> None:
    customer = make_customer("Noah Keller")
    client = _customer_client(world, customer)
    with in_business(world.business_a):
        conversation = customer_writes(world.business_a, "Can I bring my bike?", customer=customer)
        agent_writes(world.business_a, world.agent_a, conversation, "Yes, as special baggage.")
        _resolve(world, conversation)
    assert client.get("/chat/csat/").json() == {"survey": None}  # the business does not ask
    business_client(world.business_a, world.owner_a).post("/reports/", {"csat_enabled": "on"})
    survey = client.get("/chat/csat/").json()["survey"]
    assert survey is not None
    page = client.get("/chat/")
    assert b"csat" in page.content
    for bad in ({"cycle": survey["cycle"], "score": 6}, {"cycle": survey["cycle"]}, {"cycle": "x", "score": 3}):
        assert client.post("/chat/csat/", json.dumps(bad), content_type="application/json").status_code == 400
    done = client.post(
        "/chat/csat/", {"cycle": survey["cycle"], "score": 4, "comment": "Quick!"}, content_type="application/json"
    )
    assert done.status_code == 201, done.content
    again = client.post("/chat/csat/", {"cycle": survey["cycle"], "score": 1}, content_type="application/json")
    assert again.status_code == 404
    assert client.get("/chat/csat/").json() == {"survey": None}
    with in_business(world.business_a):
        rating = CsatResponse.objects.get()
        assert (rating.score, rating.comment, rating.conversation_id) == (4, "Quick!", conversation.pk)
        # another customer cannot rate it, and a new message starts a new cycle with no survey
        other = _customer_client(world, make_customer())
        assert other.get("/chat/csat/").status_code in (200,) and other.get("/chat/csat/").json()["survey"] is None
        customer_writes(world.business_a, "Thanks again", customer=customer)
    assert client.get("/chat/csat/").json() == {"survey": None}
    # signed out: 401; business B's chat page does not know A's conversation
    assert business_client(world.business_a).get("/chat/csat/").status_code == 401
    b = business_client(world.business_b)
    session = b.session
    session[CUSTOMER_SESSION_KEY] = customer.pk
    session.save()
    assert b.get("/chat/csat/").json() == {"survey": None}


def test_overview_shows_live_figures(world: World) -> None:
    with in_business(world.business_a):
        before = dict(selectors.live_pairs(business=world.business_a, with_cost=True))
        conversation = customer_writes(world.business_a, "Hi")
        with at(timezone.now() + timedelta(minutes=3)):
            agent_writes(world.business_a, world.agent_a, conversation, "Hello")
        customer_writes(world.business_a, "Unread")
        figures = selectors.live_figures(business=world.business_a)
        pairs = dict(selectors.live_pairs(business=world.business_a, with_cost=True))
    assert figures.open == int(before["Open conversations"].replace(",", "")) + 2
    assert figures.waiting == int(before["Waiting for a reply"].replace(",", "")) + 1
    assert figures.median_first_response_today is not None
    assert pairs["This month's cost so far"].startswith("€")
    assert list(pairs) == [
        "Open conversations",
        "Waiting for a reply",
        "Median first response today",
        "This month's cost so far",
    ]
    client = business_client(world.business_a, world.agent_a)
    page = client.get("/").content.decode()
    assert "Median first response today" in page and 'hx-get="/overview/live/"' in page
    strip = client.get("/overview/live/")
    assert strip.status_code == 200 and b"live-strip" in strip.content
    assert business_client(world.business_b, world.agent_a).get("/overview/live/").status_code == 403


def test_overview_shows_the_cost_only_to_who_may_open_billing(world: World) -> None:
    """Billing answers agents 403 (member_required(manage=True)): the Overview and its refreshed
    strip show them no cost either, and no other euro figure."""
    with in_business(world.business_a):
        customer_writes(world.business_a, "Hi")  # a billable conversation: the cost is not nil
    agent = business_client(world.business_a, world.agent_a)
    assert agent.get("/billing/").status_code == 403
    for path in ("/", "/overview/live/"):
        page = agent.get(path).content.decode()
        assert "Median first response today" in page
        assert "cost so far" not in page and "€" not in page, path
        assert "so far (before tax)" not in page and 'data-section="billing"' not in page
    owner = business_client(world.business_a, world.owner_a)
    assert owner.get("/billing/").status_code == 200
    for path in ("/", "/overview/live/"):
        assert "cost so far" in owner.get(path).content.decode(), path  # "This month&#x27;s cost so far"
    with in_business(world.business_a):
        assert "This month's cost so far" not in dict(selectors.live_pairs(business=world.business_a, with_cost=False))
        assert selectors.live_figures(business=world.business_a, with_cost=False).month_cost is None


def test_reports_are_per_business(world: World) -> None:
    # B's figures before and after A's new conversation: tests that commit (live_db) may have
    # left cycles of their own in B when they ran first.
    today = timezone.localdate()
    with in_business(world.business_b):
        before = selectors.report(business=world.business_b, start=today, end=today).new
        cycles_before = set(Cycle.objects.values_list("pk", flat=True))
    with in_business(world.business_a):
        customer_writes(world.business_a, "A's customer")
        assert selectors.report(business=world.business_a, start=today, end=today).new >= 1
    with in_business(world.business_b):
        assert selectors.report(business=world.business_b, start=today, end=today).new == before
        assert set(Cycle.objects.values_list("pk", flat=True)) == cycles_before
    stranger = business_client(world.business_b, world.agent_a)
    assert stranger.get("/reports/").status_code == 403
    assert stranger.get("/inbox/api/sla/?conversations=1").status_code == 403
