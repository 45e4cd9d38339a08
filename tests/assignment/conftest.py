"""A business of its own per test (committed), so the queue, the agents' statuses and the settings
of one test never meet another test's: the shared businesses collect committed conversations."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django_tenants.utils import schema_context

from accounts.models import Customer, Membership, User
from assignment import services as assignment_services
from assignment.models import AgentStatus, AssignmentSettings
from messaging import services
from messaging.models import Conversation
from tenancy.models import Business
from tenancy.services import business_create
from tests.conftest import World, _user
from tests.messaging.conftest import make_customer


@dataclass
class Team:
    business: Business
    owner: User
    agents: list[User]

    def settings(self, **values: Any) -> None:
        with schema_context(self.business.schema_name):
            assignment_services.assignment_settings_update(business=self.business, user=self.owner, values=values)

    def online(self, *agents: User) -> None:
        with schema_context(self.business.schema_name):
            for agent in agents:
                assignment_services.agent_status_set(
                    business=self.business, user=agent, status=AgentStatus.Status.ONLINE
                )

    def write(self, customer: Customer, body: str = "Hello?") -> Conversation:
        with schema_context(self.business.schema_name):
            result = services.message_send_customer(business=self.business, customer=customer, body=body)
            return Conversation.objects.select_related("assignee").get(pk=result.message.conversation_id)

    def conversation(self, pk: int) -> Conversation:
        with schema_context(self.business.schema_name):
            return Conversation.objects.select_related("assignee").get(pk=pk)

    def run[T](self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        with schema_context(self.business.schema_name):
            return fn(business=self.business, **kwargs)

    def loads(self) -> dict[int, int]:
        with schema_context(self.business.schema_name):
            rows = Conversation.objects.filter(status="open", assignee__isnull=False).values_list(
                "assignee_id", flat=True
            )
            counts: dict[int, int] = {}
            for user_id in rows:
                counts[user_id] = counts.get(user_id, 0) + 1
            return counts


def make_team(agents: int = 3) -> Team:
    tag = uuid.uuid4().hex[:8]
    owner = _user(f"owner-{tag}@queue.test")
    business = business_create(owner=owner, name=f"Queue {tag}", slug=f"q-{tag}")
    people = []
    for index in range(agents):
        agent = _user(f"agent{index}-{tag}@queue.test")
        agent.full_name = f"Agent {index} {tag}"
        agent.save(update_fields=["full_name"])
        Membership.objects.create(user=agent, business=business, role=Membership.Role.AGENT)
        people.append(agent)
    connection.set_schema_to_public()
    return Team(business, owner, people)


@pytest.fixture
def team(live_db: World) -> Iterator[Team]:
    yield make_team()
    connection.set_schema_to_public()


@pytest.fixture
def customers(live_db: World) -> Callable[[int], list[Customer]]:
    counter = itertools.count()
    lock = threading.Lock()

    def make(n: int) -> list[Customer]:
        with lock:
            return [make_customer(f"Kundin {next(counter)} {uuid.uuid4().hex[:4]}") for _ in range(n)]

    return make


def settings_row(team: Team) -> AssignmentSettings:
    with schema_context(team.business.schema_name):
        return AssignmentSettings.objects.get(pk=1)
