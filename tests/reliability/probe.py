"""What the tenant isolation probe knows about the project: nothing route-specific.

It discovers every URL pattern (public and business URLconfs, walked through Django's own
reverse tables, so includes, admin and any future /api/v1/ come along), every websocket route
and every frame type a consumer handles (its `on_<type>` methods), and fills their parameters
with business B's identifiers. The invariants it checks are generic: nothing of B's secret
data appears in any answer to A's people, no existing row of B changes, and nothing is a 5xx.
"""

from __future__ import annotations

import inspect
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.urls import get_resolver
from django.urls.converters import IntConverter
from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, Membership
from tenancy.models import Business

# Tables whose rows change with any legitimate write in the schema, not with one record.
COUNTER_TABLES = {"messaging_streamcounter"}


@dataclass(frozen=True)
class Route:
    urlconf: str
    template: str  # "%(business_id)s/block/" style, from Django's reverse tables
    params: tuple[str, ...]
    int_params: frozenset[str]

    def fill(self, value: str) -> str:
        return "/" + self.template % {name: value for name in self.params}


def http_routes(urlconf: str) -> list[Route]:
    """Every URL pattern of a URLconf, as a template with its parameters."""
    resolver = get_resolver(urlconf)
    routes: dict[str, Route] = {}
    for key in list(resolver.reverse_dict.keys()):
        for possibilities, _pattern, _defaults, converters in resolver.reverse_dict.getlist(key):
            for template, params in possibilities:
                int_params = frozenset(p for p, c in converters.items() if isinstance(c, IntConverter))
                routes.setdefault(template, Route(urlconf, template, tuple(params), int_params))
    return sorted(routes.values(), key=lambda r: r.template)


def websocket_routes() -> list[tuple[str, type]]:
    """(path, consumer class) of every websocket route in config.routing."""
    from config.routing import websocket_urlpatterns

    found = []
    for entry in websocket_urlpatterns:
        consumer = getattr(entry.callback, "consumer_class", None)
        found.append(("/" + str(entry.pattern), consumer))
    return found


def frame_types(consumer: type) -> list[str]:
    """The frame types a consumer handles: its `on_<type>` methods ("." is written "_")."""
    return sorted(
        name.removeprefix("on_")
        for name, member in inspect.getmembers(consumer)
        if name.startswith("on_") and callable(member)
    )


@dataclass
class Secrets:
    """Business B's data that A's people must never see, and its identifiers to aim at."""

    markers: list[str]
    ids: dict[str, int]
    strings: list[str] = field(default_factory=list)

    def leaked_in(self, text: str) -> list[str]:
        return [m for m in self.markers if m in text]


def plant_secrets(business_b: Business) -> Secrets:
    """A customer of B, a conversation with a secret message and a contact note."""
    from messaging.models import Contact, Conversation, Message
    from messaging.services import message_send_customer

    marker = uuid.uuid4().hex[:10]
    phone = "+49152" + str(uuid.uuid4().int)[:8]
    customer_b = Customer.objects.create(
        phone_number=phone, display_name=f"SecretCustomerB{marker}", country_code="DE", verified_at=timezone.now()
    )
    body = f"SecretMessageB{marker}"
    with tenant_context(business_b):
        message_send_customer(business=business_b, customer=customer_b, body=body)
        contact = Contact.objects.get(customer=customer_b)
        contact.notes = f"SecretNoteB{marker}"
        contact.save(update_fields=["notes"])
        conversation = Conversation.objects.get(contact=contact)
        message = Message.objects.filter(conversation=conversation).latest("id")
    connection.set_schema_to_public()
    membership = Membership.objects.filter(business=business_b).order_by("id").first()
    ids = {
        "business": business_b.pk,
        "customer": customer_b.pk,
        "contact": contact.pk,
        "conversation": conversation.pk,
        "message": message.pk,
        "event": message.event_id,
        "membership": membership.pk if membership else 0,
        "member_user": membership.user_id if membership else 0,
    }
    return Secrets(
        markers=[body, f"SecretNoteB{marker}", f"SecretCustomerB{marker}", phone],
        ids=ids,
        strings=[business_b.slug, business_b.schema_name, str(business_b.pk)],
    )


def probe_form_data(secrets: Secrets) -> dict[str, str]:
    """A POST body that aims every common field name at B's objects."""
    ids = secrets.ids
    return {
        "conversation_id": str(ids["conversation"]),
        "contact_id": str(ids["contact"]),
        "message_id": str(ids["message"]),
        "membership_id": str(ids["membership"]),
        "business_id": str(ids["business"]),
        "customer_id": str(ids["customer"]),
        "user_id": str(ids["member_user"]),
        "assignee_id": str(ids["member_user"]),
        "id": str(ids["conversation"]),
        "body": "probe",
        "name": "probe",
        "notes": "probe",
        "status": "resolved",
        "role": "owner",
        "email": "probe@example.test",
        "slug": secrets.strings[0],
    }


def frame_payload(frame_type: str, secrets: Secrets) -> dict[str, Any]:
    ids = secrets.ids
    return {
        "type": frame_type.replace("_", "."),
        "conversation_id": ids["conversation"],
        "after": 0,
        "up_to": ids["event"],
        "read": True,
        "body": "probe",
        "kind": "text",
        "client_msg_id": uuid.uuid4().hex,
        "assignee_id": ids["member_user"],
        "status": "resolved",
    }


def snapshot(business: Business) -> dict[tuple[str, Any], str]:
    """Every existing row of B, by (table, id): its schema's tables, its business row, its seats."""
    rows: dict[tuple[str, Any], str] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [business.schema_name],
        )
        tables = sorted(row[0] for row in cursor.fetchall() if row[0] not in COUNTER_TABLES)
        for table in tables:
            cursor.execute(f'SELECT id, t::text FROM "{business.schema_name}"."{table}" t')
            rows.update(((table, pk), text) for pk, text in cursor.fetchall())
        cursor.execute("SELECT id, t::text FROM public.tenancy_business t WHERE id = %s", [business.pk])
        rows.update((("public.tenancy_business", pk), text) for pk, text in cursor.fetchall())
        cursor.execute("SELECT id, t::text FROM public.accounts_membership t WHERE business_id = %s", [business.pk])
        rows.update((("public.accounts_membership", pk), text) for pk, text in cursor.fetchall())
    return rows


def tampering(before: dict[tuple[str, Any], str], business: Business, secrets: Secrets) -> list[str]:
    """Existing rows of B that changed or vanished, and new rows in B's secret conversation.
    (New rows elsewhere are allowed: a customer may legitimately start a chat with B.)"""
    after = snapshot(business)
    problems = [f"{table}#{pk} changed" for (table, pk), text in before.items() if after.get((table, pk)) != text]
    conversation = secrets.ids["conversation"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.columns WHERE table_schema = %s AND column_name = 'conversation_id'",
            [business.schema_name],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f'SELECT id FROM "{business.schema_name}"."{table}" WHERE conversation_id = %s', [conversation]
            )
            problems += [
                f"{table}#{pk} added to B's conversation" for (pk,) in cursor.fetchall() if (table, pk) not in before
            ]
    return problems


def public_host() -> str:
    return settings.PARLEY_DOMAIN
