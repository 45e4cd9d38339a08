"""The SQL that keeps service cycles (see insights.models.Cycle): two triggers and a rebuild.

The triggers live in each business's schema and name their tables through TG_TABLE_SCHEMA, so a
cloned schema's copy writes its own cycles (tenancy.provisioning copies functions and triggers).
The message trigger is per statement with a transition table: the send core writes a batch of
messages in one INSERT, and the trigger walks only the rows that matter (customer messages and
agents' replies), in id order.
"""

TRIGGERS_SQL = r"""
CREATE FUNCTION insights_cycle_on_messages() RETURNS trigger LANGUAGE plpgsql AS $$
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
