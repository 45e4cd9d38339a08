"""Spare schemas: business schemas copied from the template ahead of time.

Copying the template (`parley_clone_schema`, ~150 relations) costs 300–900 ms and grows with the
number of businesses; a sign-up should not wait for it. So a few copies are made ahead, each
named `spare_<random>` and listed in `tenancy_spareschema` (public), and sign-up takes one:

- **Taking** (`spare_take`, in the sign-up's transaction): `SELECT … FOR UPDATE SKIP LOCKED`
  picks a current spare no other transaction holds, `ALTER SCHEMA … RENAME` gives it the
  business's name (one catalog row) and its row is deleted. Two sign-ups never get the same
  spare (the second skips the first's locked row); a sign-up that rolls back gives its spare
  back (the rename and the delete roll back with it). The insights trigger functions name their
  tables through TG_TABLE_SCHEMA, sequences and defaults refer to objects by oid: nothing in a
  schema refers to its own name, so a renamed copy is the same as a copy made under that name.
- **Never visible as a tenant**: a spare has no Business row and no Domain, so no host reaches
  it, and migrations, jobs and the admin (which walk the businesses) never see it. Business
  schemas are `b_<slug>`; no slug makes a `spare_` name.
- **Kept current by discarding, not migrating**: a spare records the fingerprint of its applied
  migrations when it is copied, and only a spare whose fingerprint equals the template's is ever
  taken. After a release migrates the template, the older spares are dropped and copied again
  (`spares_refill`, run by `parley_setup` and by the refill job). The migration executor never
  touches spares, so a spare can't be renamed into a business half-way through its migration.
- **Refilled** by the job `tenancy.spares_refill` that each sign-up queues (and a periodic one
  as a safety net), by `parley_setup`, `seed_demo` and `manage.py parley_spares`, up to
  `PARLEY_SPARE_SCHEMAS` (0 turns the pool off). Refills are serialised by an advisory lock, so
  concurrent ones never overshoot. With the pool empty, sign-up copies the template as before.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

from django.conf import settings
from django.db import connection as default_connection
from django.db import transaction
from django.db.models import Count, Q, QuerySet

from tenancy.models import SpareSchema
from tenancy.provisioning import clone_template_into, template_schema

logger = logging.getLogger("parley.tenancy")

SPARE_PREFIX = "spare_"
REFILL_TASK = "tenancy.spares_refill"
# pg_advisory_xact_lock key of the refillers: "spares" in ASCII.
_REFILL_LOCK = 0x737061726573

# django-tenants' backend adds schema switching to the connection; the stubs don't know it.
connection: Any = default_connection


def pool_size() -> int:
    return max(0, int(getattr(settings, "PARLEY_SPARE_SCHEMAS", 0)))


def _fingerprint_sql(schema: str) -> str:
    quoted = '"' + schema.replace('"', '""') + '"'
    return (
        "SELECT md5(coalesce(string_agg(app || '.' || name, ',' ORDER BY app, name), '')) "
        f"FROM {quoted}.django_migrations"
    )


def migrations_fingerprint(schema: str) -> str:
    """md5 of the schema's applied migrations (app.name, sorted): equal fingerprints, equal state."""
    with connection.cursor() as cursor:
        cursor.execute(_fingerprint_sql(schema))
        row = cursor.fetchone()
    return str(row[0])


def spare_take(*, schema_name: str) -> str | None:
    """Rename a current spare to `schema_name` and return the spare's old name; None when the
    pool has no current spare. Must run in the caller's transaction (the sign-up's)."""
    if not connection.in_atomic_block:
        raise RuntimeError("spare_take runs inside the sign-up's transaction")
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, schema_name FROM {SpareSchema._meta.db_table} "
            f"WHERE migrations = ({_fingerprint_sql(template_schema())}) "
            "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        row = cursor.fetchone()
        if row is None:
            return None
        spare_id, spare_name = row
        cursor.execute(f'ALTER SCHEMA "{spare_name}" RENAME TO "{schema_name}"')
        cursor.execute(f"DELETE FROM {SpareSchema._meta.db_table} WHERE id = %s", [spare_id])
    return str(spare_name)


def schema_provision(*, schema_name: str) -> Literal["spare", "copy"]:
    """Give a new business its schema: a spare renamed when one is ready, else a fresh copy."""
    if spare_take(schema_name=schema_name) is not None:
        return "spare"
    clone_template_into(schema_name)
    return "copy"


def spare_create() -> str:
    """Copy the template into a new spare and list it, in one transaction."""
    name = f"{SPARE_PREFIX}{uuid.uuid4().hex[:16]}"
    with transaction.atomic():
        clone_template_into(name)
        SpareSchema.objects.create(schema_name=name, migrations=migrations_fingerprint(name))
    return name


def _spares_drop(spares: QuerySet[SpareSchema], why: str) -> int:
    """Drop the spares of `spares` one transaction each (a sign-up may take one meanwhile:
    SKIP LOCKED); returns how many."""
    dropped = 0
    while True:
        with transaction.atomic():
            spare = spares.select_for_update(skip_locked=True).order_by("id").first()
            if spare is None:
                return dropped
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{spare.schema_name}" CASCADE')
            spare.delete()
        dropped += 1
        logger.info("dropped spare schema %s: %s", spare.schema_name, why)


def spares_discard_stale() -> int:
    """Drop every spare whose migrations differ from the template's; returns how many."""
    current = migrations_fingerprint(template_schema())
    return _spares_drop(SpareSchema.objects.exclude(migrations=current), "behind the template's migrations")


def spares_discard_all() -> int:
    """Drop every spare (e.g. before turning the pool off); returns how many."""
    return _spares_drop(SpareSchema.objects.all(), "all discarded")


def spares_refill(*, size: int | None = None) -> int:
    """Drop stale spares, then copy until `size` current ones wait (PARLEY_SPARE_SCHEMAS by
    default); returns how many were copied. Each copy commits on its own, so the first is
    usable before the last is made; refillers take turns (advisory lock) and each counts the
    pool inside its turn, so concurrent refills never overshoot."""
    size = pool_size() if size is None else max(0, size)
    connection.set_schema_to_public()
    spares_discard_stale()
    created = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_REFILL_LOCK])
            current = migrations_fingerprint(template_schema())
            if SpareSchema.objects.filter(migrations=current).count() >= size:
                break
            name = spare_create()
        created += 1
        logger.info("copied spare schema %s", name)
    return created


def spares_status() -> dict[str, int]:
    """How many spares wait, and how many of them are current (takeable)."""
    current = migrations_fingerprint(template_schema())
    counts = SpareSchema.objects.aggregate(spares=Count("id"), current=Count("id", filter=Q(migrations=current)))
    return {"spares": counts["spares"], "current": counts["current"], "size": pool_size()}
