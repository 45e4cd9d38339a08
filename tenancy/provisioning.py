"""Fast schema provisioning: copy a migrated template schema instead of replaying migrations.

Replaying every tenant migration costs about a second per business and grows with the
project; copying table definitions from `TENANT_BASE_SCHEMA` costs a few milliseconds. The
copy function is installed by the migrations `tenancy.0002_clone_function` (and re-installed by
0005, 0007 when it changed) and kept small on purpose: tables (columns, defaults, identity,
checks) with the template's rows (migration history, content types) and identity sequences moved
past them, then keys, indexes, foreign keys, then the schema's functions and triggers (insights
keeps its service cycles with triggers).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection as default_connection
from django_tenants.utils import schema_exists

CLONE_FUNCTION_SQL = r"""
CREATE OR REPLACE FUNCTION public.parley_clone_schema(source text, dest text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    src oid;
    rels oid[];
    tbl record;
    idx record;
    fk record;
    col record;
    fn record;
    trg record;
    cols text;
BEGIN
    -- Every catalog lookup below starts from the template's own relations (an index lookup
    -- by oid); joins through pg_namespace by name let the planner, on catalogs whose
    -- statistics lag behind, scan every schema's constraints once per namespace: quadratic in
    -- the number of businesses (0.9 s for the foreign keys alone at 500).
    SELECT oid INTO STRICT src FROM pg_namespace WHERE nspname = source;
    SELECT array_agg(oid) INTO rels FROM pg_class WHERE relnamespace = src AND relkind IN ('r', 'p');
    EXECUTE format('CREATE SCHEMA %I', dest);
    FOR tbl IN
        SELECT c.oid, c.relname FROM pg_class c WHERE c.oid = ANY(rels) ORDER BY c.relname
    LOOP
        -- Not INCLUDING INDEXES: LIKE renames them, and later migrations drop indexes by name.
        EXECUTE format(
            'CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING IDENTITY '
            'INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)',
            dest, tbl.relname, source, tbl.relname);
        -- Generated columns (a search vector) take no values: copy every other column.
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a
        WHERE a.attrelid = tbl.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
        EXECUTE format('INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %I.%I',
                       dest, tbl.relname, cols, cols, source, tbl.relname);
        -- Identity columns got fresh sequences; move them past the copied rows.
        FOR col IN
            SELECT a.attname FROM pg_attribute a
            WHERE a.attrelid = tbl.oid AND a.attidentity <> '' AND NOT a.attisdropped
        LOOP
            EXECUTE format(
                'SELECT setval(pg_get_serial_sequence(%L, %L), COALESCE((SELECT max(%I) FROM %I.%I), 0) + 1, false)',
                format('%I.%I', dest, tbl.relname), col.attname, col.attname, dest, tbl.relname
            );
        END LOOP;
    END LOOP;
    -- Primary keys, unique and exclusion constraints, keeping their names.
    FOR idx IN
        SELECT cl.relname AS tablename, con.conname, pg_get_constraintdef(con.oid) AS def
        FROM pg_constraint con
        JOIN pg_class cl ON cl.oid = con.conrelid
        WHERE con.conrelid = ANY(rels) AND con.contype IN ('p', 'u', 'x')
        ORDER BY con.contype
    LOOP
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', dest, idx.tablename, idx.conname, idx.def);
    END LOOP;
    -- Plain indexes, keeping their names.
    FOR idx IN
        SELECT ic.relname AS indexname, tc.relname AS tablename, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        WHERE i.indrelid = ANY(rels)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conrelid = i.indrelid
                          AND con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x'))
    LOOP
        EXECUTE regexp_replace(
            idx.def,
            ' ON (ONLY )?\S+ USING ',
            format(' ON %I.%I USING ', dest, idx.tablename)
        );
    END LOOP;
    -- Foreign keys: definitions that point into the template are re-pointed at the new
    -- schema; those that point at public tables stay as they are.
    FOR fk IN
        SELECT cl.relname AS tablename, con.conname, pg_get_constraintdef(con.oid) AS def, con.confrelid
        FROM pg_constraint con
        JOIN pg_class cl ON cl.oid = con.conrelid
        WHERE con.conrelid = ANY(rels) AND con.contype = 'f'
    LOOP
        EXECUTE format(
            'ALTER TABLE %I.%I ADD CONSTRAINT %I %s',
            dest, fk.tablename, fk.conname,
            regexp_replace(
                fk.def,
                'REFERENCES [^(]+\(',
                (SELECT format('REFERENCES %I.%I(',
                               CASE WHEN tc.relnamespace = src THEN dest ELSE tn.nspname::text END,
                               tc.relname)
                 FROM pg_class tc JOIN pg_namespace tn ON tn.oid = tc.relnamespace
                 WHERE tc.oid = fk.confrelid)
            )
        );
    END LOOP;
    -- Functions of the schema (the insights triggers' bodies), then triggers, re-pointed at
    -- the new schema; after the rows are copied, so no trigger fires on the copy.
    FOR fn IN
        SELECT p.oid, p.proname FROM pg_proc p
        WHERE p.pronamespace = src AND p.prokind = 'f'
    LOOP
        EXECUTE regexp_replace(
            pg_get_functiondef(fn.oid),
            'FUNCTION ' || quote_ident(source) || '\.',
            'FUNCTION ' || quote_ident(dest) || '.'
        );
    END LOOP;
    FOR trg IN
        SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
        WHERE t.tgrelid = ANY(rels) AND NOT t.tgisinternal
    LOOP
        EXECUTE replace(trg.def, ' ' || quote_ident(source) || '.', ' ' || quote_ident(dest) || '.');
    END LOOP;
END;
$$;
"""


# django-tenants' backend adds schema switching to the connection; the stubs don't know it.
connection: Any = default_connection


def template_schema() -> str:
    return str(settings.TENANT_BASE_SCHEMA)


def ensure_template_schema(*, verbosity: int = 0) -> None:
    """Create (if missing) and migrate the template schema every business is copied from."""
    if not schema_exists(template_schema()):
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{template_schema()}"')
    call_command("migrate_schemas", tenant=True, schema_name=template_schema(), interactive=False, verbosity=verbosity)
    connection.set_schema_to_public()


def clone_template_into(schema_name: str) -> None:
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        cursor.execute("SELECT public.parley_clone_schema(%s, %s)", [template_schema(), schema_name])
