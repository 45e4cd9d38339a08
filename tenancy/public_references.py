"""Migrations that drop a business schema's foreign keys into `public` (users, customers).

Each such constraint put a pair of referential triggers on the public table per business
schema (messaging.models says why they went and what keeps the references consistent).
Django's own `AlterField(db_constraint=False)` finds the constraint by introspection, renders
the models and drops one constraint per statement: ~2.5 s per schema at 1,000 businesses, over
40 minutes for all of them. Here the model state changes as with `AlterField`, and the database
runs one statement per schema that finds the constraints from the tables' oids (index lookups).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

DROP_SQL = """
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT con.conrelid::regclass AS tbl, con.conname
        FROM pg_constraint con
        WHERE con.contype = 'f'
          AND con.conrelid = ANY (ARRAY[{tables}]::regclass[])
          AND con.confrelid IN ('public.accounts_user'::regclass, 'public.accounts_customer'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.conname);
    END LOOP;
END $$;
"""


def without_constraints_into_public(
    *fields: tuple[str, str, str], state_operations: list[Operation]
) -> migrations.RunSQL:
    """`fields`: (table, column, public table) of each reference; the tables are found through
    the search path, i.e. in the schema being migrated."""
    tables = sorted({table for table, _column, _target in fields})
    forward = DROP_SQL.replace("{tables}", ", ".join(f"to_regclass('{table}')" for table in tables))
    reverse = ";\n".join(
        [
            f'ALTER TABLE "{table}" ADD CONSTRAINT "{table[:24]}_{column[:16]}_fk_{target}" FOREIGN KEY ("{column}") '
            f'REFERENCES public."{target}" ("id") DEFERRABLE INITIALLY DEFERRED'
            for table, column, target in fields
        ]
    )
    # RunSQL carries the state change itself: SeparateDatabaseAndState would clone the whole
    # project state once per schema to run it.
    return migrations.RunSQL(forward, reverse_sql=reverse, state_operations=state_operations)


def optional_user_reference() -> models.ForeignKey[Any, Any]:
    """A business table's reference to a user that is kept when the user goes away (SET NULL),
    without a database constraint into public (messaging.models says why)."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        db_constraint=False,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
