"""Spare schemas (tenancy.spares): sign-up renames a pre-copied schema instead of copying the
template; the result must be the same business, isolated, never reachable before it is one."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import override_settings
from django_tenants.signals import post_schema_sync
from django_tenants.utils import schema_context, schema_exists
from procrastinate.contrib.django.models import ProcrastinateJob

from audit.models import AuditEvent
from collab.models import Label
from config.jobs import defer_job
from tenancy.models import Business, Domain, SpareSchema
from tenancy.services import business_create
from tenancy.spares import (
    REFILL_TASK,
    migrations_fingerprint,
    spare_take,
    spares_refill,
    spares_status,
)
from tests.conftest import World, run_concurrently
from tests.jobs import run_queued_jobs


def _catalog(schema: str) -> dict[str, set[tuple[str, ...]]]:
    """Everything that makes a business schema, with its own name written as S: tables and
    columns, index and constraint definitions (foreign keys with their targets), functions,
    triggers, sequences and the migration records."""

    def norm(text: str) -> str:
        return text.replace(f'"{schema}".', "S.").replace(f"{schema}.", "S.")

    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT table_name, column_name, data_type, is_nullable, is_identity, coalesce(column_default, ''),
                      coalesce(generation_expression, '')
               FROM information_schema.columns WHERE table_schema = %s""",
            [schema],
        )
        columns = {tuple(norm(str(v)) for v in row) for row in cursor.fetchall()}
        cursor.execute("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s", [schema])
        indexes = {tuple(norm(v) for v in row) for row in cursor.fetchall()}
        cursor.execute(
            """SELECT cl.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)
               FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
               JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = %s""",
            [schema],
        )
        constraints = {tuple(norm(v) for v in row) for row in cursor.fetchall()}
        cursor.execute(
            """SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
               WHERE n.nspname = %s""",
            [schema],
        )
        functions = {tuple(norm(v) for v in row) for row in cursor.fetchall()}
        cursor.execute(
            """SELECT cl.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
               JOIN pg_class cl ON cl.oid = t.tgrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
               WHERE n.nspname = %s AND NOT t.tgisinternal""",
            [schema],
        )
        triggers = {tuple(norm(v) for v in row) for row in cursor.fetchall()}
        cursor.execute(
            """SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s""",
            [schema],
        )
        relations = {tuple(row) for row in cursor.fetchall()}
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')
        migrations = {tuple(row) for row in cursor.fetchall()}
        cursor.execute(f'SELECT app_label, model FROM "{schema}".django_content_type')
        content_types = {tuple(row) for row in cursor.fetchall()}
    return {
        "relations": relations,
        "columns": columns,
        "indexes": indexes,
        "constraints": constraints,
        "functions": functions,
        "triggers": triggers,
        "migrations": migrations,
        "content_types": content_types,
    }


def _source(business: Business) -> str:
    event = AuditEvent.objects.get(action="business.created", business=business)
    return str(event.data["schema"])


def _slug() -> str:
    return f"sp-{uuid.uuid4().hex[:10]}"


def _empty_the_pool() -> None:
    """Forget every spare for this test (rolled back after it): sign-up must copy."""
    SpareSchema.objects.all().delete()


def test_sign_up_renames_a_spare_and_queues_a_refill(world: World) -> None:
    spares_refill(size=1)
    spare = SpareSchema.objects.order_by("id").first()
    assert spare is not None
    ProcrastinateJob.objects.filter(task_name=REFILL_TASK).delete()

    business = business_create(owner=world.owner_a, name="Spare One", slug=_slug())

    assert _source(business) == "spare"
    assert not SpareSchema.objects.filter(pk=spare.pk).exists()
    assert not schema_exists(spare.schema_name)
    assert schema_exists(business.schema_name)
    assert ProcrastinateJob.objects.filter(task_name=REFILL_TASK, status="todo").count() == 1


def test_a_business_from_a_spare_is_identical_to_one_copied_directly(world: World) -> None:
    spares_refill(size=1)
    from_spare = business_create(owner=world.owner_a, name="From Spare", slug=_slug())
    _empty_the_pool()
    copied = business_create(owner=world.owner_a, name="Copied", slug=_slug())

    assert (_source(from_spare), _source(copied)) == ("spare", "copy")
    spare_catalog, copy_catalog = _catalog(from_spare.schema_name), _catalog(copied.schema_name)
    template = _catalog("tenant_template")
    assert len(spare_catalog["relations"]) > 100
    assert spare_catalog["migrations"] and spare_catalog["triggers"] and spare_catalog["functions"]
    for kind in spare_catalog:
        assert spare_catalog[kind] == copy_catalog[kind], kind
        assert spare_catalog[kind] == template[kind], kind


def test_the_fallback_copies_when_the_pool_is_empty(world: World) -> None:
    _empty_the_pool()
    business = business_create(owner=world.owner_a, name="No Spare", slug=_slug())

    assert _source(business) == "copy"
    assert _catalog(business.schema_name) == _catalog("tenant_template")


def test_a_sign_up_that_fails_gives_its_spare_back(world: World) -> None:
    spares_refill(size=1)
    before = set(SpareSchema.objects.values_list("schema_name", flat=True))
    slug = _slug()

    with pytest.raises(RuntimeError), transaction.atomic():
        business = business_create(owner=world.owner_a, name="Doomed", slug=slug)
        assert _source(business) == "spare"
        raise RuntimeError("a later step of the sign-up failed")

    assert set(SpareSchema.objects.values_list("schema_name", flat=True)) == before
    assert all(schema_exists(name) for name in before)
    assert not Business.objects.filter(slug=slug).exists()
    assert not schema_exists("b_" + slug.replace("-", "_"))


def test_spares_behind_the_template_are_never_taken_and_are_replaced(world: World) -> None:
    spares_refill(size=1)
    old = set(SpareSchema.objects.values_list("schema_name", flat=True))
    # A release migrated the template (a new migration recorded) after the spares were copied.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenant_template.django_migrations (app, name, applied) VALUES ('probe', '0001_new', now())"
        )
    assert spares_status()["current"] == 0

    business = business_create(owner=world.owner_a, name="After Release", slug=_slug())

    assert _source(business) == "copy"
    assert ("probe", "0001_new") in _catalog(business.schema_name)["migrations"]
    assert set(SpareSchema.objects.values_list("schema_name", flat=True)) == old  # not taken

    spares_refill(size=1)

    assert not any(schema_exists(name) for name in old)  # dropped
    fresh = SpareSchema.objects.get()
    assert fresh.migrations == migrations_fingerprint("tenant_template") == migrations_fingerprint(fresh.schema_name)
    assert _source(business_create(owner=world.owner_a, name="Next", slug=_slug())) == "spare"
    assert not SpareSchema.objects.exists()


def test_spares_are_never_tenants_and_businesses_from_spares_are_isolated(world: World) -> None:
    spares_refill(size=3)
    spare_names = list(SpareSchema.objects.values_list("schema_name", flat=True))
    assert not Business.objects.filter(schema_name__in=spare_names).exists()
    assert not Domain.objects.filter(tenant__schema_name__in=spare_names).exists()
    client = Client()
    for name in spare_names:
        for host in (f"{name}.parley.localhost", f"{name.replace('_', '-')}.parley.localhost"):
            assert client.get("/", HTTP_HOST=host).status_code == 404

    first = business_create(owner=world.owner_a, name="First", slug=_slug())
    second = business_create(owner=world.owner_b, name="Second", slug=_slug())
    assert (_source(first), _source(second)) == ("spare", "spare")
    assert client.get("/", HTTP_HOST=first.host).status_code != 404
    with schema_context(first.schema_name):
        Label.objects.create(name="only-first")
    with schema_context(second.schema_name):
        assert not Label.objects.filter(name="only-first").exists()
    with schema_context(world.business_a.schema_name):
        assert not Label.objects.filter(name="only-first").exists()
    with schema_context(first.schema_name):
        assert Label.objects.filter(name="only-first").count() == 1


def test_post_schema_sync_is_sent_once_with_the_new_business(world: World) -> None:
    received: list[Any] = []

    def receiver(sender: Any, tenant: Any, **kwargs: Any) -> None:
        received.append(tenant)

    post_schema_sync.connect(receiver)
    try:
        spares_refill(size=1)
        business = business_create(owner=world.owner_a, name="Signal", slug=_slug())
    finally:
        post_schema_sync.disconnect(receiver)
    assert [tenant.schema_name for tenant in received] == [business.schema_name]


@override_settings(PARLEY_SPARE_SCHEMAS=0)
def test_with_the_pool_off_sign_up_copies_and_queues_nothing(world: World) -> None:
    ProcrastinateJob.objects.filter(task_name=REFILL_TASK).delete()
    _empty_the_pool()
    business = business_create(owner=world.owner_a, name="Pool Off", slug=_slug())
    assert _source(business) == "copy"
    assert not ProcrastinateJob.objects.filter(task_name=REFILL_TASK).exists()
    assert spares_refill() == 0


def test_the_management_command_fills_reports_and_discards(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("parley_spares", size=2)
    assert spares_status()["current"] >= 2
    assert "ready" in capsys.readouterr().out
    names = list(SpareSchema.objects.values_list("schema_name", flat=True))
    call_command("parley_spares", discard=True)
    assert not SpareSchema.objects.exists()
    assert not any(schema_exists(name) for name in names)


def test_two_sign_ups_never_take_the_same_spare(live_db: World) -> None:
    spares_refill(size=2)
    both_taken = threading.Barrier(2, timeout=20)

    class Rollback(Exception):
        pass

    def take() -> str | None:
        taken: str | None = None
        try:
            with transaction.atomic():
                taken = spare_take(schema_name=f"t9_{uuid.uuid4().hex[:12]}")
                both_taken.wait()  # each holds its spare until the other has taken one too
                raise Rollback
        except Rollback:
            return taken

    taken = run_concurrently(2, take)

    assert None not in taken
    assert len(set(taken)) == 2
    # Both rolled back: the spares are still there, under their own names.
    assert set(taken) <= set(SpareSchema.objects.values_list("schema_name", flat=True))
    assert all(schema_exists(name) for name in taken if name)


def test_the_refill_job_fills_the_pool(live_db: World) -> None:
    with override_settings(PARLEY_SPARE_SCHEMAS=4):
        with transaction.atomic():
            defer_job(REFILL_TASK, queueing_lock=REFILL_TASK, skip_if_queued=True)
        run_queued_jobs(queues=["tenancy"])
        status = spares_status()
    assert status["current"] >= 4
