"""tenancy.migration_executor: `migrate_schemas --tenant` with the loader built once per process.

A real tenant migration (collab.0003_contact_unnamed, a partial index) is unapplied in some
business schemas with Django's own executor; then `migrate_schemas --tenant` (the fast executor,
Parley's default) must apply it again in exactly those schemas, DDL and django_migrations rows,
and report a schema where it fails without stopping the others. The foreign keys into public
(collab.0004_no_constraints_into_public, state operations AlterField) are dropped in every
schema with the project states around each operation made once, not once per schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as default_connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import override_settings

from tenancy.migration_executor import FastTenantExecutor, PlannedStates, SchemaMigrator, executor_for
from tenancy.models import Business
from tenancy.services import business_create
from tests.conftest import World

connection: Any = default_connection
MIGRATION = ("collab", "0003_contact_unnamed")
BEFORE = ("collab", "0002_search_index")


def unapply(schema: str, to: tuple[str, str] = BEFORE) -> None:
    connection.set_schema(schema)
    MigrationExecutor(connection).migrate([to])
    connection.set_schema_to_public()


def recorded(schema: str, migration: tuple[str, str] = MIGRATION) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT count(*) FROM "{schema}".django_migrations WHERE app = %s AND name = %s', list(migration)
        )
        return bool(cursor.fetchone()[0])


def index_exists(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = 'contact_unnamed'", [schema]
        )
        return bool(cursor.fetchone()[0])


def rows(schema: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{schema}".django_migrations')
        return int(cursor.fetchone()[0])


def test_it_is_the_default_executor_and_others_stay_reachable() -> None:
    assert executor_for(None) is FastTenantExecutor
    assert executor_for("parley") is FastTenantExecutor
    assert executor_for("standard").codename == "standard"


def test_applies_a_missing_migration_in_exactly_the_schemas_that_lack_it(world: World) -> None:
    businesses = [business_create(owner=world.owner_a, name=f"Mig {n}", slug=f"mig-{n}") for n in range(4)]
    lacking, complete = businesses[:3], businesses[3]
    full = rows(complete.schema_name)
    # Unapplying it unapplies the collab migrations after it too (they depend on it).
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT count(*) FROM "{complete.schema_name}".django_migrations WHERE app = %s AND name > %s',
            list(BEFORE),
        )
        unapplied = int(cursor.fetchone()[0])
    assert unapplied >= 1
    for business in lacking:
        unapply(business.schema_name)
        assert not recorded(business.schema_name) and not index_exists(business.schema_name)
        assert rows(business.schema_name) == full - unapplied

    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

    for business in Business.objects.exclude(schema_name="public"):
        assert recorded(business.schema_name), business.schema_name
        assert index_exists(business.schema_name), business.schema_name
        assert rows(business.schema_name) == full, business.schema_name
    # Content types (post_migrate) exist in each schema, as `migrate` leaves them.
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{lacking[0].schema_name}".django_content_type')
        assert cursor.fetchone()[0] > 0


def test_a_failing_schema_is_reported_and_the_others_are_migrated(world: World) -> None:
    businesses = [business_create(owner=world.owner_a, name=f"Fail {n}", slug=f"fail-{n}") for n in range(3)]
    for business in businesses:
        unapply(business.schema_name)
    broken = businesses[1].schema_name
    with connection.cursor() as cursor:  # the migration's index name is taken in this one
        cursor.execute(f'CREATE TABLE "{broken}".contact_unnamed (id int)')

    with pytest.raises(CommandError) as failure:
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

    message = str(failure.value)
    assert "failed in 1 of" in message and f"{broken}:" in message and "already exists" in message
    assert not recorded(broken) and not index_exists(broken)  # rolled back, still at 0002
    for business in (businesses[0], businesses[2]):
        assert recorded(business.schema_name) and index_exists(business.schema_name)


@override_settings(PARLEY_MIGRATION_MAX_FAILURES=1)
def test_stops_starting_schemas_after_the_failure_limit(world: World) -> None:
    businesses = [business_create(owner=world.owner_a, name=f"Stop {n}", slug=f"stop-{n}") for n in range(2)]
    for business in businesses:
        unapply(business.schema_name)
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE TABLE "{business.schema_name}".contact_unnamed (id int)')

    with pytest.raises(CommandError) as failure:
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

    # Whichever broken schema came first failed; nothing was started after it.
    message = str(failure.value)
    assert "failed in 1 of" in message and "not started" in message
    assert sum(f"{b.schema_name}:" in message for b in businesses) == 1
    assert not any(recorded(b.schema_name) for b in businesses)


@pytest.fixture
def committed_businesses(live_db: World) -> Iterator[list[Business]]:
    created = [business_create(owner=live_db.owner_a, name=f"Fork {n}", slug=f"fork-{n}") for n in range(3)]
    yield created
    connection.set_schema_to_public()
    for business in created:
        business.delete(force_drop=True)


@override_settings(PARLEY_MIGRATION_FORK_FROM=1, TENANT_MULTIPROCESSING_MAX_PROCESSES=2)
def test_worker_processes_migrate_their_share_of_schemas(committed_businesses: list[Business]) -> None:
    for business in committed_businesses[:2]:
        unapply(business.schema_name)

    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

    for business in committed_businesses:
        assert recorded(business.schema_name) and index_exists(business.schema_name)


@override_settings(PARLEY_MIGRATION_FORK_FROM=1, TENANT_MULTIPROCESSING_MAX_PROCESSES=2)
def test_inside_a_transaction_the_schemas_are_migrated_here_not_by_forked_workers(world: World) -> None:
    """Inside a caller's open transaction (this test's atomic block) forked workers would inherit
    its connection as open ("Cannot open a new connection in an atomic block") and could not see
    the businesses it made: the schemas are migrated in this process, however many there are
    (a reused test database has dozens)."""
    businesses = [business_create(owner=world.owner_a, name=f"Open {n}", slug=f"open-{n}") for n in range(2)]
    for business in businesses:
        unapply(business.schema_name)
    assert connection.in_atomic_block

    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

    for business in businesses:
        assert recorded(business.schema_name) and index_exists(business.schema_name)


FK_MIGRATION = ("collab", "0004_no_constraints_into_public")
LAST = "collab.0005_message_search_pending_list"


def keys_into_users(schema: str) -> int:
    """Foreign keys of the schema's collab tables into public.accounts_user (0004 drops all 3)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND con.contype = 'f' "
            "AND c.relname IN ('collab_agentnotification', 'collab_conversationlabel') "
            "AND con.confrelid = 'public.accounts_user'::regclass",
            [schema],
        )
        return int(cursor.fetchone()[0])


def test_foreign_key_migrations_run_per_schema_on_states_made_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    businesses = [business_create(owner=world.owner_a, name=f"Keys {n}", slug=f"keys-{n}") for n in range(4)]
    two_behind, one_behind, broken = businesses[:2], businesses[2], businesses[3]
    for business in [*two_behind, broken]:
        unapply(business.schema_name)  # collab 0003 and 0004 unapplied: the keys are back
    unapply(one_behind.schema_name, to=MIGRATION)  # only 0004 unapplied
    for business in businesses:
        assert keys_into_users(business.schema_name) == 3 and not recorded(business.schema_name, FK_MIGRATION)
    with connection.cursor() as cursor:  # 0003's index name is taken in this one
        cursor.execute(f'CREATE TABLE "{broken.schema_name}".contact_unnamed (id int)')
    made: list[tuple[str, ...]] = []
    plan_states = SchemaMigrator._plan_states

    def counted(self: SchemaMigrator, pre_state: Any, plan: list[tuple[Any, bool]]) -> PlannedStates:
        made.append(tuple(f"{m.app_label}.{m.name}" for m, _backwards in plan))
        return plan_states(self, pre_state, plan)

    monkeypatch.setattr(SchemaMigrator, "_plan_states", counted)

    with pytest.raises(CommandError) as failure:
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)

    # One set of states per distinct plan (and one empty plan for the schemas already complete),
    # not one per schema: three schemas shared the two-migration plan.
    # (collab.0005, the search index's pending list, follows 0004 in every plan.)
    both = ("collab.0003_contact_unnamed", "collab.0004_no_constraints_into_public", LAST)
    assert sorted(made) == sorted([(), both, ("collab.0004_no_constraints_into_public", LAST)])
    for business in [*two_behind, one_behind]:
        assert keys_into_users(business.schema_name) == 0, business.schema_name
        assert recorded(business.schema_name) and recorded(business.schema_name, FK_MIGRATION)
        assert index_exists(business.schema_name)
    message = str(failure.value)
    assert "failed in 1 of" in message and f"{broken.schema_name}:" in message and "already exists" in message
    # The failed schema: 0003 rolled back, 0004 never run there; its keys untouched.
    assert keys_into_users(broken.schema_name) == 3
    assert not recorded(broken.schema_name) and not recorded(broken.schema_name, FK_MIGRATION)
    # Re-run after the cause is gone: only the broken schema had something to apply.
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "{broken.schema_name}".contact_unnamed')
    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=0)
    assert keys_into_users(broken.schema_name) == 0 and recorded(broken.schema_name, FK_MIGRATION)


def test_the_shared_states_are_only_read_by_the_schemas_that_use_them(world: World) -> None:
    businesses = [business_create(owner=world.owner_a, name=f"Read {n}", slug=f"read-{n}") for n in range(2)]
    for business in businesses:
        unapply(business.schema_name, to=MIGRATION)
    migrator = SchemaMigrator("default", verbosity=0, interactive=False)

    results = [migrator.migrate(business.schema_name, label="test") for business in businesses]

    assert [r.error for r in results] == [None, None]
    assert [r.applied for r in results] == [["collab.0004_no_constraints_into_public", LAST]] * 2
    (planned,) = [p for p in migrator.planned.values() if p.migrations]  # one plan, made once
    (step,) = planned.migrations[0].steps  # the RunSQL carrying the three AlterFields
    _operation, before, after = step
    for state, constraint in ((before, True), (after, False)):
        model = state.apps.get_model("collab", "AgentNotification")
        assert model._meta.get_field("actor").db_constraint is constraint
        assert state.models["collab", "agentnotification"].fields["user"].db_constraint is constraint
    assert all(keys_into_users(b.schema_name) == 0 for b in businesses)
