"""The message trigger's writes are static statements when the trigger's table is in the
session's own schema (insights.cycles.MESSAGES_FUNCTION_SQL): planned once per session instead
of parsed and planned by EXECUTE in every send group. A write to another schema's table still
goes through dynamic SQL aimed at that schema. The trigger is unchanged; new businesses get the
new body as in 0005 (provisioning copies the migrated template's functions)."""

from django.db import migrations

from insights.cycles import MESSAGES_FUNCTION_SQL

# The body this migration replaces, as 0005 created it: restored when migrating back.
DYNAMIC_MESSAGES_FUNCTION_SQL = r"""
CREATE OR REPLACE FUNCTION insights_cycle_on_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    conversation bigint;
    customer_wrote boolean;
    agent_replied boolean;
    opening_answered boolean;
    -- Each conversation's first agent reply: it answers a cycle open from before the batch.
    answered_conversation bigint[];
    answered_at timestamptz[];
    answered_by bigint[];
    -- Each conversation's first customer message, with the first agent reply after it: the
    -- cycle it opens if none is open.
    opened_conversation bigint[];
    opened_at timestamptz[];
    opened_answered_at timestamptz[];
    opened_answered_by bigint[];
BEGIN
    -- A bulk load of history (collab.bulk) sets this for its transaction and rebuilds cycles after.
    IF current_setting('parley.bulk_load', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- Taking the batch's rows one by one in id order, a customer message opens a cycle when its
    -- conversation has none open, and an agent reply answers the open cycle if it has no first
    -- response yet; nothing in a batch resolves a cycle, so once open a cycle stays open. Per
    -- conversation that comes to: if a cycle was open before the batch, the batch's first agent
    -- reply answers it (wherever it stands among the customer's messages, which open nothing);
    -- if not, the first customer message opens one, answered by the first agent reply after it
    -- (replies before it answered nothing). Which case holds only the cycles table knows: both
    -- are collected here, and the UPDATE and the INSERT below each act where theirs holds.
    --
    -- Only the writes are dynamic SQL (the table is named through TG_TABLE_SCHEMA), parsed and
    -- planned at every EXECUTE: at most two per batch, whatever its size. This pass over the
    -- batch is a static query, planned once per session, and no SQL per row.
    FOR r IN
        SELECT conversation_id, direction, author_user_id, created_at FROM new_rows
        WHERE direction = 'in' OR (direction = 'out' AND author_kind = 'agent')
        ORDER BY conversation_id, id
    LOOP
        IF r.conversation_id IS DISTINCT FROM conversation THEN
            conversation := r.conversation_id;
            customer_wrote := false;
            agent_replied := false;
            opening_answered := false;
        END IF;
        IF r.direction = 'in' THEN
            IF NOT customer_wrote THEN
                customer_wrote := true;
                opened_conversation := opened_conversation || r.conversation_id;
                opened_at := opened_at || r.created_at;
                opened_answered_at := opened_answered_at || NULL::timestamptz;
                opened_answered_by := opened_answered_by || NULL::bigint;
            END IF;
        ELSE
            IF NOT agent_replied THEN
                agent_replied := true;
                answered_conversation := answered_conversation || r.conversation_id;
                answered_at := answered_at || r.created_at;
                answered_by := answered_by || r.author_user_id;
            END IF;
            IF customer_wrote AND NOT opening_answered THEN
                opening_answered := true;
                opened_answered_at[cardinality(opened_conversation)] := r.created_at;
                opened_answered_by[cardinality(opened_conversation)] := r.author_user_id;
            END IF;
        END IF;
    END LOOP;
    -- Before the INSERT, so it never sees the cycles this batch opens. One row: plain
    -- parameters, planned faster than the arrays (a quiet inbox writes one message at a time).
    IF cardinality(answered_conversation) = 1 THEN
        EXECUTE format($sql$
            UPDATE %I.insights_cycle SET first_response_at = $2, first_responder_id = $3
            WHERE conversation_id = $1 AND resolved_at IS NULL AND first_response_at IS NULL
        $sql$, TG_TABLE_SCHEMA)
        USING answered_conversation[1], answered_at[1], answered_by[1];
    ELSIF cardinality(answered_conversation) > 1 THEN
        -- = ANY rather than a join with the arrays: a join costs more to plan than it saves.
        EXECUTE format($sql$
            UPDATE %I.insights_cycle
            SET first_response_at = $2[array_position($1, conversation_id)],
                first_responder_id = $3[array_position($1, conversation_id)]
            WHERE conversation_id = ANY($1) AND resolved_at IS NULL AND first_response_at IS NULL
        $sql$, TG_TABLE_SCHEMA)
        USING answered_conversation, answered_at, answered_by;
    END IF;
    -- ON CONFLICT: the conversation has a cycle open from before the batch.
    IF cardinality(opened_conversation) = 1 THEN
        EXECUTE format($sql$
            INSERT INTO %I.insights_cycle (conversation_id, started_at, first_response_at, first_responder_id)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (conversation_id) WHERE resolved_at IS NULL DO NOTHING
        $sql$, TG_TABLE_SCHEMA)
        USING opened_conversation[1], opened_at[1], opened_answered_at[1], opened_answered_by[1];
    ELSIF cardinality(opened_conversation) > 1 THEN
        EXECUTE format($sql$
            INSERT INTO %I.insights_cycle (conversation_id, started_at, first_response_at, first_responder_id)
            SELECT * FROM unnest($1, $2, $3, $4)
            ON CONFLICT (conversation_id) WHERE resolved_at IS NULL DO NOTHING
        $sql$, TG_TABLE_SCHEMA)
        USING opened_conversation, opened_at, opened_answered_at, opened_answered_by;
    END IF;
    RETURN NULL;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("insights", "0005_set_based_message_trigger")]

    operations = [
        migrations.RunSQL(MESSAGES_FUNCTION_SQL, reverse_sql=DYNAMIC_MESSAGES_FUNCTION_SQL),
    ]
