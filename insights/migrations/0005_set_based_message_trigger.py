"""The message trigger's function writes a batch's cycles with at most two dynamic statements
instead of one per message (insights.cycles.MESSAGES_FUNCTION_SQL); the trigger is unchanged.
New businesses get the new body too: provisioning copies the template schema's functions, and
the template is migrated like every business."""

from django.db import migrations

from insights.cycles import MESSAGES_FUNCTION_SQL

# The body this migration replaces, as 0002 created it: restored when migrating back.
ROW_BY_ROW_MESSAGES_FUNCTION_SQL = r"""
CREATE OR REPLACE FUNCTION insights_cycle_on_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    -- A bulk load of history (collab.bulk) sets this for its transaction and rebuilds cycles after.
    IF current_setting('parley.bulk_load', true) = 'on' THEN
        RETURN NULL;
    END IF;
    FOR r IN
        SELECT conversation_id, direction, author_user_id, created_at FROM new_rows
        WHERE direction = 'in' OR (direction = 'out' AND author_kind = 'agent')
        ORDER BY id
    LOOP
        IF r.direction = 'in' THEN
            EXECUTE format(
                'INSERT INTO %I.insights_cycle (conversation_id, started_at) VALUES ($1, $2) '
                'ON CONFLICT (conversation_id) WHERE resolved_at IS NULL DO NOTHING', TG_TABLE_SCHEMA)
            USING r.conversation_id, r.created_at;
        ELSE
            EXECUTE format(
                'UPDATE %I.insights_cycle SET first_response_at = $2, first_responder_id = $3 '
                'WHERE conversation_id = $1 AND resolved_at IS NULL AND first_response_at IS NULL',
                TG_TABLE_SCHEMA)
            USING r.conversation_id, r.created_at, r.author_user_id;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("insights", "0004_no_constraints_into_public")]

    operations = [
        migrations.RunSQL(MESSAGES_FUNCTION_SQL, reverse_sql=ROW_BY_ROW_MESSAGES_FUNCTION_SQL),
    ]
