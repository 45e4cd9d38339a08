"""Assignment (issue 12): round robin, balanced, capacity under concurrent arrivals, the queue and
place in line, snooze wake-ups, auto-return, business hours and the away message, agents'
statuses, a seat removed mid-session, the collision guard, and tenant isolation.

Every test has a business of its own (tests/assignment/conftest.py) with committed data: drains
run after commit, as in production, and concurrent arrivals run in separate transactions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context

from accounts.models import Customer, Membership
from accounts.services import seat_remove
from assignment import hours, selectors
from assignment import services as assignment_services
from assignment.models import AgentStatus, AssignmentSettings, default_hours
from messaging import services
from messaging.errors import MessagingError
from messaging.models import AgentPresence, Conversation, Message
from tests.assignment.conftest import Team, make_team
from tests.conftest import Concurrently, World
from tests.jobs import run_queued_jobs

Customers = Callable[[int], list[Customer]]


def test_round_robin_serves_online_agents_in_turn(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=10)
    team.online(*team.agents)
    order = [team.write(c).assignee_id for c in customers(6)]
    ids = [a.pk for a in team.agents]  # never assigned yet: in user order, then the oldest turn first
    assert order == ids + ids


def test_round_robin_skips_agents_who_are_not_online(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=10)
    first, second, third = team.agents
    team.online(first, third)
    team.run(assignment_services.agent_status_set, user=second, status=AgentStatus.Status.AWAY)
    assert [team.write(c).assignee_id for c in customers(4)] == [first.pk, third.pk, first.pk, third.pk]


def test_balanced_gives_the_agent_with_fewest_open(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.BALANCED, capacity=10)
    first, second, third = team.agents
    busy = [team.write(c) for c in customers(3)]  # nobody online yet: all three wait in the queue
    assert all(c.assignee_id is None for c in busy)
    for conversation in busy[:2]:
        team.run(services.conversation_assign, user=first, conversation_id=conversation.pk, assignee_id=first.pk)
    team.run(services.conversation_assign, user=second, conversation_id=busy[2].pk, assignee_id=second.pk)
    team.online(*team.agents)
    # first holds 2, second 1, third 0: new arrivals fill third, then second and third alike.
    # Ties go to the agent whose last automatic assignment is oldest (never: first of all).
    fresh = [team.write(c).assignee_id for c in customers(4)]
    assert fresh == [third.pk, second.pk, third.pk, first.pk]
    assert team.loads() == {first.pk: 3, second.pk: 2, third.pk: 2}


def test_concurrent_arrivals_never_exceed_capacity(
    team: Team, customers: Customers, concurrently: Concurrently
) -> None:
    """Sixteen customers write at once, each send and its drain in transactions of their own
    (threads with their own connections): two agents of capacity 3 get exactly 3 each."""
    team.settings(mode=AssignmentSettings.Mode.BALANCED, capacity=3)
    first, second, _third = team.agents
    team.online(first, second)
    people = iter(customers(16))
    lock = threading.Lock()

    def arrive() -> int:
        with lock:
            customer = next(people)
        return team.write(customer).pk

    ids = concurrently(16, arrive)
    assert len(set(ids)) == 16
    assert team.loads() == {first.pk: 3, second.pk: 3}
    with schema_context(team.business.schema_name):
        assert Conversation.objects.filter(selectors.in_queue()).count() == 10


def test_concurrent_drains_never_exceed_capacity_round_robin(
    team: Team, customers: Customers, concurrently: Concurrently
) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=2)
    for customer in customers(12):
        team.write(customer)  # nobody online: twelve in the queue
    team.online(*team.agents)  # each goes online in its own transaction, with its own drain
    results = concurrently(8, lambda: team.run(assignment_services.queue_drain))
    assert sum(len(r) for r in results) <= 6
    assert team.loads() == {a.pk: 2 for a in team.agents}
    with schema_context(team.business.schema_name):
        assert Conversation.objects.filter(selectors.in_queue()).count() == 6


def test_queue_is_served_oldest_first_and_tells_each_customer_their_place(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=1)
    agent = team.agents[0]
    team.online(agent)
    people = customers(3)
    first, second, third = (team.write(c) for c in people)
    assert first.assignee_id == agent.pk
    with schema_context(team.business.schema_name):
        assert selectors.queue_position(conversation=first) is None
        assert selectors.queue_position(conversation=second) == 1
        assert selectors.queue_position(conversation=third) == 2
        state = selectors.customer_queue_state(conversation=third)
    assert state["position"] == 2 and state["closed"] is False and state["assigned"] is False
    # One assignment in the last hour: the estimate is position / rate, at least a minute.
    assert state["estimate_minutes"] == 120
    # A second message of a waiting customer keeps their place.
    team.write(people[2], "Still there?")
    with schema_context(team.business.schema_name):
        assert selectors.queue_position(conversation=team.conversation(third.pk)) == 2
    # Resolving the first frees the agent: the oldest waiting conversation is next.
    team.run(services.conversation_set_status, user=agent, conversation_id=first.pk, status="resolved")
    assert team.conversation(second.pk).assignee_id == agent.pk
    with schema_context(team.business.schema_name):
        assert selectors.queue_position(conversation=team.conversation(third.pk)) == 1


def test_the_chat_page_shows_the_place_in_line(team: Team, customers: Customers) -> None:
    from tests.conftest import business_client
    from tests.messaging.conftest import session_key

    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=1)
    team.online(team.agents[0])
    people = customers(2)
    for customer in people:
        team.write(customer)
    client = business_client(team.business)
    client.cookies[django_settings.SESSION_COOKIE_NAME] = session_key(customer=people[1])
    page = client.get("/chat/")
    assert page.status_code == 200
    assert page.context["chat_config"]["queue"]["position"] == 1
    assert "1st in line" in page.content.decode()
    assert client.get("/chat/queue/").json()["position"] == 1


# The wake-up job is scheduled at the snooze's end by Python's clock and picked up by
# Procrastinate when PostgreSQL's now() reaches it: the two clocks must agree.
@pytest.mark.real_clock
def test_snooze_until_a_time_is_woken_by_its_job(team: Team, customers: Customers) -> None:
    agent = team.agents[0]
    conversation = team.write(customers(1)[0])
    until = timezone.now() + timedelta(seconds=2)
    team.run(assignment_services.conversation_snooze, user=agent, conversation_id=conversation.pk, until=until)
    assert team.conversation(conversation.pk).status == "snoozed"
    run_queued_jobs(queues=["assignment"])  # not due yet
    assert team.conversation(conversation.pk).status == "snoozed"
    time.sleep(max(0.0, (until - timezone.now()).total_seconds()) + 0.5)
    run_queued_jobs(queues=["assignment"])
    woken = team.conversation(conversation.pk)
    assert woken.status == "open" and woken.snoozed_until is None
    with schema_context(team.business.schema_name):
        assert selectors.queue_position(conversation=woken) == 1  # unassigned: back in line


def test_snooze_until_the_customer_writes(team: Team, customers: Customers) -> None:
    agent = team.agents[0]
    customer = customers(1)[0]
    conversation = team.write(customer)
    team.run(assignment_services.conversation_snooze, user=agent, conversation_id=conversation.pk, until=None)
    with schema_context(team.business.schema_name):
        assert assignment_services.conversations_wake_due(business=team.business) == []  # no time: only a message
    assert team.conversation(conversation.pk).status == "snoozed"
    team.write(customer, "Any news?")
    assert team.conversation(conversation.pk).status == "open"


def test_snooze_refuses_bad_times(team: Team, customers: Customers) -> None:
    conversation = team.write(customers(1)[0])
    for until in ("yesterday", timezone.now() - timedelta(minutes=1), timezone.now() + timedelta(days=400)):
        with pytest.raises(MessagingError) as refused:
            team.run(
                assignment_services.conversation_snooze,
                user=team.agents[0],
                conversation_id=conversation.pk,
                until=until,
            )
        assert refused.value.code == "invalid"
    assert team.conversation(conversation.pk).status == "open"


def test_a_resolved_conversation_reopens_when_the_customer_writes(team: Team, customers: Customers) -> None:
    customer = customers(1)[0]
    conversation = team.write(customer)
    team.run(services.conversation_set_status, user=team.agents[0], conversation_id=conversation.pk, status="resolved")
    assert team.conversation(conversation.pk).waiting_since is None
    team.write(customer, "One more question")
    reopened = team.conversation(conversation.pk)
    assert reopened.status == "open" and reopened.waiting_since is not None


def test_auto_return_puts_an_unanswered_conversation_back_in_line(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=5, auto_return_minutes=10)
    first, second, _third = team.agents
    team.online(first)
    slow, answered = (team.write(c) for c in customers(2))
    assert slow.assignee_id == first.pk and answered.assignee_id == first.pk
    team.run(services.message_send_agent, user=first, conversation_id=answered.pk, body="On it!")
    later = timezone.now() + timedelta(minutes=11)
    assert team.run(assignment_services.conversations_return_overdue, now=later) == [slow.pk]
    returned = team.conversation(slow.pk)
    # Not given straight back to the agent who let it wait: it waits for someone else.
    assert returned.assignee_id is None and returned.returned_from_id == first.pk
    assert team.conversation(answered.pk).assignee_id == first.pk
    team.online(second)
    assert team.conversation(slow.pk).assignee_id == second.pk
    # The thread says why.
    with schema_context(team.business.schema_name):
        from messaging.models import Event

        actions = [f for f in Event.objects.filter(conversation_id=slow.pk, type="conversation.activity")]
    assert any('"action":"returned"' in e.frame for e in actions)


def test_auto_return_is_off_by_default(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN)
    team.online(team.agents[0])
    team.write(customers(1)[0])
    later = timezone.now() + timedelta(days=1)
    assert team.run(assignment_services.conversations_return_overdue, now=later) == []


def test_auto_return_through_the_sweep_job(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, auto_return_minutes=1)
    team.online(team.agents[0])
    conversation = team.write(customers(1)[0])
    with schema_context(team.business.schema_name):
        Conversation.objects.filter(pk=conversation.pk).update(
            assigned_at=timezone.now() - timedelta(minutes=5), waiting_since=timezone.now() - timedelta(minutes=5)
        )
    from assignment.jobs import sweep

    sweep.defer(schema_name=team.business.schema_name)
    run_queued_jobs(queues=["assignment"])
    assert team.conversation(conversation.pk).assignee_id is None


# --- business hours ------------------------------------------------------------------------


def _hours(**values: object) -> AssignmentSettings:
    settings = AssignmentSettings(hours_enabled=True, time_zone="Europe/Berlin", hours=default_hours())
    for name, value in values.items():
        setattr(settings, name, value)
    return settings


def test_business_hours_follow_the_time_zone() -> None:
    settings = _hours()
    # Wednesday 2026-12-02: 08:30 UTC is 09:30 in Berlin (open); 16:30 UTC is 17:30 (closed).
    assert hours.is_open(settings, datetime(2026, 12, 2, 8, 30, tzinfo=UTC))
    assert not hours.is_open(settings, datetime(2026, 12, 2, 16, 30, tzinfo=UTC))
    assert hours.closed_since(settings, datetime(2026, 12, 2, 16, 30, tzinfo=UTC)) == datetime(
        2026, 12, 2, 16, 0, tzinfo=UTC
    )
    # Friday evening: next opening is Monday 09:00 Berlin.
    assert hours.next_opening(settings, datetime(2026, 12, 4, 18, 0, tzinfo=UTC)) == datetime(
        2026, 12, 7, 8, 0, tzinfo=UTC
    )
    # Summer time moves the UTC hour: 1 July 07:30 UTC is 09:30 in Berlin.
    assert hours.is_open(settings, datetime(2026, 7, 1, 7, 30, tzinfo=UTC))
    assert hours.is_open(_hours(hours_enabled=False), datetime(2026, 12, 6, 3, 0, tzinfo=UTC))


def test_outside_hours_the_away_message_goes_once(team: Team, customers: Customers) -> None:
    closed_all_week = {str(day): None for day in range(7)}
    team.settings(hours_enabled=True, hours=closed_all_week, away_message="We are closed. We reply tomorrow.")
    customer = customers(1)[0]
    conversation = team.write(customer)
    team.write(customer, "Hello again?")
    with schema_context(team.business.schema_name):
        away = list(Message.objects.filter(conversation_id=conversation.pk, author_kind="system"))
        state = selectors.customer_queue_state(conversation=team.conversation(conversation.pk))
    assert [m.body for m in away] == ["We are closed. We reply tomorrow."]
    assert away[0].direction == "out"
    # The away message answers nobody: the customer still waits for a person.
    assert team.conversation(conversation.pk).waiting_since is not None
    assert state["closed"] is True and state["opens_at"] is None and state["estimate_minutes"] is None
    # The page shows an opening in the business's zone, not the customer's clock.
    with schema_context(team.business.schema_name):
        assert state["time_zone"] == selectors.assignment_settings_cached().time_zone


def test_inside_hours_no_away_message(team: Team, customers: Customers) -> None:
    always = {str(day): ["00:00", "23:59"] for day in range(7)}
    team.settings(hours_enabled=True, hours=always, away_message="Closed")
    conversation = team.write(customers(1)[0])
    now = timezone.now().astimezone(hours.zone("Europe/Berlin"))
    with schema_context(team.business.schema_name):
        sent = Message.objects.filter(conversation_id=conversation.pk, author_kind="system").count()
    assert sent == (1 if (now.hour, now.minute) == (23, 59) else 0)


# --- agents' statuses ------------------------------------------------------------------------


def test_an_agent_is_away_when_every_inbox_tab_closed_and_back_when_one_opens(team: Team) -> None:
    agent = team.agents[0]
    with schema_context(team.business.schema_name):
        assert assignment_services.agent_connected(business=team.business, user=agent) == "online"
        for channel in ("tab-1", "tab-2"):
            AgentPresence.objects.create(channel_name=channel, user=agent, seen_at=timezone.now())
        AgentPresence.objects.filter(channel_name="tab-1").delete()
        assert assignment_services.agent_disconnected(business=team.business, user=agent) is None  # one still open
        AgentPresence.objects.filter(channel_name="tab-2").delete()
        assert assignment_services.agent_disconnected(business=team.business, user=agent) == "away"
        assert selectors.agent_status_of(user_id=agent.pk) == "away"
        assert assignment_services.agent_connected(business=team.business, user=agent) == "online"
        # A status the agent chose is kept when a tab opens.
        assignment_services.agent_status_set(business=team.business, user=agent, status="offline")
        assert assignment_services.agent_connected(business=team.business, user=agent) == "offline"


def test_a_removed_agents_conversations_go_back_to_the_queue(team: Team, customers: Customers) -> None:
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=5)
    leaving, staying, _third = team.agents
    team.online(leaving)
    conversations = [team.write(c) for c in customers(2)]
    assert {c.assignee_id for c in conversations} == {leaving.pk}
    team.online(staying)
    seat_remove(membership=Membership.objects.get(user=leaving, business=team.business), actor=team.owner)
    connection.set_schema_to_public()
    # Back in the queue in the removing transaction, then served to the agent who stays.
    assert {team.conversation(c.pk).assignee_id for c in conversations} == {staying.pk}
    with schema_context(team.business.schema_name):
        assert not AgentStatus.objects.filter(user_id=leaving.pk).exists()
    # And the removed agent is never picked again, even if a stale status row said online.
    with schema_context(team.business.schema_name):
        AgentStatus.objects.create(user_id=leaving.pk, status="online")
    team.run(assignment_services.agent_status_set, user=staying, status="away")
    later = team.write(customers(1)[0])
    assert later.assignee_id is None


# --- collision guard ------------------------------------------------------------------------


def test_replying_into_a_held_conversation_needs_confirmation(team: Team, customers: Customers) -> None:
    holder, other, _third = team.agents
    conversation = team.write(customers(1)[0])
    team.run(services.conversation_assign, user=holder, conversation_id=conversation.pk, assignee_id=holder.pk)
    with pytest.raises(MessagingError) as held:
        team.run(services.message_send_agent, user=other, conversation_id=conversation.pk, body="I'll take it")
    assert held.value.code == "held_by_other" and holder.get_short_name() in held.value.message
    # A note is always fine; a confirmed reply goes through and the holder keeps it.
    team.run(services.message_send_agent, user=other, conversation_id=conversation.pk, body="fyi", kind="note")
    team.run(
        services.message_send_agent, user=other, conversation_id=conversation.pk, body="I'll take it", takeover=True
    )
    assert team.conversation(conversation.pk).assignee_id == holder.pk


def test_only_the_assignee_may_reply_when_the_business_says_so(team: Team, customers: Customers) -> None:
    team.settings(only_assignee_replies=True)
    holder, other, _third = team.agents
    conversation = team.write(customers(1)[0])
    team.run(services.conversation_assign, user=holder, conversation_id=conversation.pk, assignee_id=holder.pk)
    with pytest.raises(MessagingError) as refused:
        team.run(services.message_send_agent, user=other, conversation_id=conversation.pk, body="Hi", takeover=True)
    assert refused.value.code == "assignee_only"
    with schema_context(team.business.schema_name):
        assert not Message.objects.filter(conversation_id=conversation.pk, direction="out").exists()
    team.run(services.message_send_agent, user=holder, conversation_id=conversation.pk, body="Hi, Anna here")
    # The owner may take over, with confirmation.
    team.run(services.message_send_agent, user=team.owner, conversation_id=conversation.pk, body="Owner", takeover=True)


def test_transfer_with_a_note(team: Team, customers: Customers) -> None:
    first, second, _third = team.agents
    conversation = team.write(customers(1)[0])
    team.run(services.conversation_assign, user=first, conversation_id=conversation.pk, assignee_id=first.pk)
    team.run(
        services.conversation_assign,
        user=first,
        conversation_id=conversation.pk,
        assignee_id=second.pk,
        note="Refund question: you know the policy best.",
    )
    assert team.conversation(conversation.pk).assignee_id == second.pk
    with schema_context(team.business.schema_name):
        note = Message.objects.get(conversation_id=conversation.pk, kind="note")
        from messaging.models import Event

        frames = [e.frame for e in Event.objects.filter(conversation_id=conversation.pk, type="conversation.activity")]
    assert note.body == "Refund question: you know the policy best." and note.author_user_id == first.pk
    assert any('"action":"transferred"' in f and "Refund question" in f for f in frames)


# --- tenant isolation -----------------------------------------------------------------------


def test_one_business_never_touches_anothers_queue_or_agents(team: Team, customers: Customers) -> None:
    other = make_team(agents=1)
    other.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=5)
    other.online(*other.agents)
    team.settings(mode=AssignmentSettings.Mode.ROUND_ROBIN, capacity=5)
    # An agent of the other business cannot be made online here, nor assigned, nor act.
    with pytest.raises(MessagingError):
        team.run(assignment_services.agent_status_set, user=other.agents[0], status="online")
    mine = team.write(customers(1)[0])
    with pytest.raises(MessagingError):
        team.run(
            services.conversation_assign, user=team.agents[0], conversation_id=mine.pk, assignee_id=other.agents[0].pk
        )
    with pytest.raises(MessagingError):
        team.run(assignment_services.conversation_snooze, user=other.agents[0], conversation_id=mine.pk, until=None)
    # Their online agent does not serve this queue; their queue is theirs.
    assert team.conversation(mine.pk).assignee_id is None
    theirs = other.write(customers(1)[0])
    assert theirs.assignee_id == other.agents[0].pk
    with schema_context(team.business.schema_name):
        assert selectors.queue_length() == 1
        assert AssignmentSettings.objects.get(pk=1).mode == "round_robin"
        assert not AgentStatus.objects.filter(user_id=other.agents[0].pk).exists()
    # Pages: the other business's owner cannot open this settings page or its lists.
    from tests.conftest import business_client

    stranger = business_client(team.business, other.owner)
    assert stranger.get("/inbox/settings/").status_code == 403
    assert stranger.get("/inbox/api/conversations/").status_code == 403
    mine_list = business_client(team.business, team.agents[0]).get("/inbox/api/conversations/").json()
    assert [c["id"] for c in mine_list["conversations"]] == [mine.pk]


def test_agents_cannot_change_the_settings(team: Team) -> None:
    from tests.conftest import business_client

    agent = business_client(team.business, team.agents[0])
    assert agent.get("/inbox/settings/").status_code == 403
    with pytest.raises(MessagingError):
        team.run(assignment_services.assignment_settings_update, user=team.agents[0], values={"mode": "balanced"})


def test_settings_page_saves_and_validates(team: Team, live_db: World) -> None:
    from tests.conftest import business_client

    owner = business_client(team.business, team.owner)
    page = owner.get("/inbox/settings/")
    assert page.status_code == 200
    form = {
        "mode": "balanced",
        "capacity": "4",
        "auto_return_minutes": "15",
        "only_assignee_replies": "on",
        "hours_enabled": "on",
        "time_zone": "Europe/Vienna",
        "away_message": "Back at 9.",
        **{f"day{d}_open": "on" for d in range(5)},
        **{f"day{d}_start": "08:00" for d in range(7)},
        **{f"day{d}_end": "18:00" for d in range(7)},
    }
    assert owner.post("/inbox/settings/", form).status_code == 302
    row = AssignmentSettings.objects.none()
    with schema_context(team.business.schema_name):
        row = AssignmentSettings.objects.get(pk=1)
    assert (row.mode, row.capacity, row.auto_return_minutes, row.only_assignee_replies) == ("balanced", 4, 15, True)
    assert row.time_zone == "Europe/Vienna" and row.hours["0"] == ["08:00", "18:00"] and row.hours["6"] is None
    bad = owner.post("/inbox/settings/", {**form, "time_zone": "Mars/Olympus", "capacity": "0", "day1_end": "07:00"})
    assert bad.status_code == 400
    with schema_context(team.business.schema_name):
        assert AssignmentSettings.objects.get(pk=1).time_zone == "Europe/Vienna"  # nothing half-written
