"""The SQL that keeps service cycles (see insights.models.Cycle): two triggers and a rebuild.

The triggers live in each business's schema and name their tables through TG_TABLE_SCHEMA, so a
cloned schema's copy writes its own cycles (tenancy.provisioning copies functions and triggers).
The message trigger is per statement with a transition table: the send core writes a batch of
messages in one INSERT, and the trigger writes the cycles of the whole batch with at most two
statements, with the result of taking its customer messages and agents' replies one by one in id
order.
"""

# The message trigger's function on its own: migration 0005 replaced 0002's body, one dynamic
# statement per message, with this one (TRIGGERS_SQL includes it, so on a fresh database 0002
# creates it already and 0005 creates the same again).
MESSAGES_FUNCTION_SQL = r"""
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
    -- At most two writes per batch, whatever its size (below). This pass over the batch is a
    -- static query, planned once per session, and no SQL per row.
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
    -- The writes name the table through TG_TABLE_SCHEMA. When it is the session's own schema
    -- (every write from the application: django-tenants puts the business first on the
    -- search_path) they are static statements, planned once per session and function: EXECUTE
    -- parsed and planned them again in every send group (~0.4 ms of PostgreSQL's time for a
    -- group of three). A write naming another schema's table gets dynamic SQL aimed at that
    -- schema's table, never at the session's.
    IF TG_TABLE_SCHEMA = current_schema() THEN
        -- Before the INSERT, so it never sees the cycles this batch opens.
        IF cardinality(answered_conversation) = 1 THEN
            UPDATE insights_cycle SET first_response_at = answered_at[1], first_responder_id = answered_by[1]
            WHERE conversation_id = answered_conversation[1] AND resolved_at IS NULL AND first_response_at IS NULL;
        ELSIF cardinality(answered_conversation) > 1 THEN
            UPDATE insights_cycle
            SET first_response_at = answered_at[array_position(answered_conversation, conversation_id)],
                first_responder_id = answered_by[array_position(answered_conversation, conversation_id)]
            WHERE conversation_id = ANY(answered_conversation) AND resolved_at IS NULL AND first_response_at IS NULL;
        END IF;
        -- ON CONFLICT: the conversation has a cycle open from before the batch.
        IF cardinality(opened_conversation) = 1 THEN
            INSERT INTO insights_cycle (conversation_id, started_at, first_response_at, first_responder_id)
            VALUES (opened_conversation[1], opened_at[1], opened_answered_at[1], opened_answered_by[1])
            ON CONFLICT (conversation_id) WHERE resolved_at IS NULL DO NOTHING;
        ELSIF cardinality(opened_conversation) > 1 THEN
            INSERT INTO insights_cycle (conversation_id, started_at, first_response_at, first_responder_id)
            SELECT * FROM unnest(opened_conversation, opened_at, opened_answered_at, opened_answered_by)
            ON CONFLICT (conversation_id) WHERE resolved_at IS NULL DO NOTHING;
        END IF;
        RETURN NULL;
    END IF;
    -- Another schema's table: the same writes, dynamic.
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

TRIGGERS_SQL = (
    MESSAGES_FUNCTION_SQL
    + r"""
CREATE TRIGGER insights_cycle_messages AFTER INSERT ON messaging_message
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION insights_cycle_on_messages();

CREATE FUNCTION insights_cycle_on_resolve() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('parley.bulk_load', true) = 'on' THEN
        RETURN NULL;
    END IF;
    -- The services stamp updated_at with the application's clock; a bare UPDATE falls back to now().
    EXECUTE format(
        'UPDATE %I.insights_cycle SET resolved_at = GREATEST($2, started_at), resolver_id = $3 '
        'WHERE conversation_id = $1 AND resolved_at IS NULL', TG_TABLE_SCHEMA)
    USING NEW.id,
          CASE WHEN NEW.updated_at IS DISTINCT FROM OLD.updated_at THEN NEW.updated_at ELSE now() END,
          NEW.assignee_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER insights_cycle_resolved AFTER UPDATE OF status ON messaging_conversation
FOR EACH ROW WHEN (NEW.status = 'resolved' AND OLD.status IS DISTINCT FROM 'resolved')
EXECUTE FUNCTION insights_cycle_on_resolve();
"""
)

DROP_TRIGGERS_SQL = """
DROP TRIGGER IF EXISTS insights_cycle_messages ON messaging_message;
DROP TRIGGER IF EXISTS insights_cycle_resolved ON messaging_conversation;
DROP FUNCTION IF EXISTS insights_cycle_on_messages();
DROP FUNCTION IF EXISTS insights_cycle_on_resolve();
"""

# One cycle per conversation from its messages: for data written before the triggers existed
# (the migration's backfill) and for bulk loads that switch triggers off (bench, demo).
# A resolved conversation's last cycle ends at its last update.
REBUILD_SQL = """
DELETE FROM insights_cycle;
INSERT INTO insights_cycle (conversation_id, started_at, first_response_at, first_responder_id, resolved_at, resolver_id)
SELECT c.id, f.started, r.at, r.user_id,
       CASE WHEN c.status = 'resolved' THEN GREATEST(c.updated_at, f.started) END,
       CASE WHEN c.status = 'resolved' THEN c.assignee_id END
FROM messaging_conversation c
JOIN LATERAL (
    SELECT min(m.created_at) AS started FROM messaging_message m
    WHERE m.conversation_id = c.id AND m.direction = 'in'
) f ON f.started IS NOT NULL
LEFT JOIN LATERAL (
    SELECT m.created_at AS at, m.author_user_id AS user_id FROM messaging_message m
    WHERE m.conversation_id = c.id AND m.direction = 'out' AND m.author_kind = 'agent' AND m.created_at >= f.started
    ORDER BY m.created_at, m.id LIMIT 1
) r ON true;
"""
