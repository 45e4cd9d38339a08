-- parley_clone_schema before 2026-12-02 (tenancy 0007): bench/tenants.py times it against the current one.

CREATE OR REPLACE FUNCTION public.bench_clone_before(source text, dest text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tbl record;
    idx record;
    fk record;
    col record;
    fn record;
    trg record;
    cols text;
BEGIN
    EXECUTE format('CREATE SCHEMA %I', dest);
    FOR tbl IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = source AND c.relkind IN ('r', 'p') ORDER BY c.relname
    LOOP
        -- Not INCLUDING INDEXES: LIKE renames them, and later migrations drop indexes by name.
        EXECUTE format(
            'CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING IDENTITY '
            'INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)',
            dest, tbl.relname, source, tbl.relname);
        -- Generated columns (a search vector) take no values: copy every other column.
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = source AND c.relname = tbl.relname AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attgenerated = '';
        EXECUTE format('INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %I.%I',
                       dest, tbl.relname, cols, cols, source, tbl.relname);
    END LOOP;
    -- Primary keys, unique and exclusion constraints, keeping their names.
    FOR idx IN
        SELECT cl.relname AS tablename, con.conname, pg_get_constraintdef(con.oid) AS def
        FROM pg_constraint con
        JOIN pg_class cl ON cl.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace
        WHERE n.nspname = source AND con.contype IN ('p', 'u', 'x')
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
        JOIN pg_namespace n ON n.oid = tc.relnamespace
        WHERE n.nspname = source
          AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                          AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))
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
        SELECT cl.relname AS tablename, con.conname,
               pg_get_constraintdef(con.oid) AS def,
               tn.nspname AS target_schema, tc.relname AS target_table
        FROM pg_constraint con
        JOIN pg_class cl ON cl.oid = con.conrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace
        JOIN pg_class tc ON tc.oid = con.confrelid
        JOIN pg_namespace tn ON tn.oid = tc.relnamespace
        WHERE n.nspname = source AND con.contype = 'f'
    LOOP
        EXECUTE format(
            'ALTER TABLE %I.%I ADD CONSTRAINT %I %s',
            dest, fk.tablename, fk.conname,
            regexp_replace(
                fk.def,
                'REFERENCES [^(]+\(',
                format('REFERENCES %I.%I(',
                       CASE WHEN fk.target_schema = source THEN dest ELSE fk.target_schema END,
                       fk.target_table)
            )
        );
    END LOOP;
    -- Functions of the schema (the insights triggers' bodies), then triggers, re-pointed at
    -- the new schema; after the rows are copied, so no trigger fires on the copy.
    FOR fn IN
        SELECT p.oid, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = source AND p.prokind = 'f'
    LOOP
        EXECUTE regexp_replace(
            pg_get_functiondef(fn.oid),
            'FUNCTION ' || quote_ident(source) || '\.',
            'FUNCTION ' || quote_ident(dest) || '.'
        );
    END LOOP;
    FOR trg IN
        SELECT pg_get_triggerdef(t.oid) AS def FROM pg_trigger t
        JOIN pg_class cl ON cl.oid = t.tgrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
        WHERE n.nspname = source AND NOT t.tgisinternal
    LOOP
        EXECUTE replace(trg.def, ' ' || quote_ident(source) || '.', ' ' || quote_ident(dest) || '.');
    END LOOP;
    -- Identity columns got fresh sequences; move them past the copied rows.
    FOR col IN
        SELECT c.table_name, c.column_name FROM information_schema.columns c
        WHERE c.table_schema = dest AND c.is_identity = 'YES'
    LOOP
        EXECUTE format(
            'SELECT setval(pg_get_serial_sequence(%L, %L), COALESCE((SELECT max(%I) FROM %I.%I), 0) + 1, false)',
            format('%I.%I', dest, col.table_name), col.column_name, col.column_name, dest, col.table_name
        );
    END LOOP;
END;
$$;
