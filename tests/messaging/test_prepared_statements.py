"""Issue 9: the send core's hot statements are prepared once per connection
(config.sql.prepared_cursor), and a connection serves one business after another (tenancy.db
keeps it while calls come; `SET search_path` selects the business). A prepared statement names
its tables without a schema: PostgreSQL parses it again under the new `search_path` (PREPARE:
"if the value of search_path changes from one use to the next, the statement will be re-parsed"),
so business B's send through a statement first prepared for business A lands in B's tables and
reads only B's rows. Proved here on one connection, with the real statements.
"""

from __future__ import annotations

from django.db import connection
from django_tenants.utils import tenant_context

from config.sql import prepared_cursor
from messaging import services
from messaging.models import Conversation, Message
from tests.conftest import World
from tests.messaging.conftest import make_customer, prepared_statements


def test_one_prepared_statement_writes_each_business_into_its_own_schema(world: World) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # earlier tests' statements (psycopg forgets them too)
    customer = make_customer("Beide")  # a customer of both businesses, as phone numbers are
    bodies = {world.business_a.pk: "an Alpha", world.business_b.pk: "an Beta"}
    sent = {}
    for business in (world.business_a, world.business_b, world.business_a, world.business_b):
        with tenant_context(business):
            result = services.message_send_customer(business=business, customer=customer, body=bodies[business.pk])
            sent.setdefault(business.pk, []).append(result.message.pk)
    locks, counters = prepared_statements("FOR UPDATE OF c"), prepared_statements("WITH counter AS")
    # The same statements served both businesses: prepared once, run four times.
    assert len(locks) == 1 and locks[0][1] >= 4, locks  # 6: a first message locks again
    assert len(counters) == 1 and counters[0][1] == 4, counters
    reservations = prepared_statements("pg_get_serial_sequence")
    assert len(reservations) == 1 and reservations[0][1] >= 4, reservations

    for business in (world.business_a, world.business_b):
        with tenant_context(business):
            mine = Message.objects.filter(conversation__contact__customer=customer)
            assert sorted(mine.values_list("pk", flat=True)) == sorted(sent[business.pk])
            assert set(mine.values_list("body", flat=True)) == {bodies[business.pk]}
            conversation = Conversation.objects.get(contact__customer=customer)
            assert conversation.last_message_preview == bodies[business.pk]
            # The ids came from this business's own sequence (looked up under its search_path).
            with connection.cursor() as cursor:
                cursor.execute(f'SELECT last_value FROM "{business.schema_name}".messaging_message_id_seq')
                (last_value,) = cursor.fetchone()
            assert max(sent[business.pk]) <= last_value


def test_a_prepared_cursor_made_first_runs_in_the_business_schema(world: World) -> None:
    """django-tenants sets search_path when Django makes a cursor; a block whose first cursor
    is a prepared one (a send group's, an ack group's) must not run under the schema before."""
    for business in (world.business_a, world.business_b, world.business_a):
        with tenant_context(business), prepared_cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            assert cursor.fetchone() == (business.schema_name,)


def test_a_send_groups_statements_are_planned_once_not_on_every_run(live_db: World) -> None:
    """Left to PostgreSQL, the reservation, the lock and the threads upsert got a custom plan on
    every run (their generic plan is costed for more rows than a group has); the send group asks
    for generic plans (messaging.sending._plan_generically), so none is planned per run — and
    the setting ends with the group's transaction."""
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    business = live_db.business_a  # committed: each group is its own transaction, as on a server
    for _ in range(8):  # past PostgreSQL's five custom plans before it weighs a generic one
        with tenant_context(business):
            services.message_send_customer(business=business, customer=make_customer(), body="hallo")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement NOT LIKE 'DEALLOCATE%%'"
        )
        statements = cursor.fetchall()
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("auto",)  # outside the group: PostgreSQL's own choice again
    hot = [
        s
        for s in statements
        if any(f in s[0] for f in ("FOR UPDATE OF c", "pg_get_serial_sequence", "directory_customerthread"))
    ]
    assert len(hot) == 3, statements
    for statement, generic, custom in statements:
        assert custom == 0 and generic >= 1, (statement, generic, custom)
