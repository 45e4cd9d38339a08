"""The full-text index over messages (migration collab.0002), kept in one place with the
expressions the search selector must repeat exactly.

Each message gets one stored `search_vector`: its body stemmed as English and as German, so
"flights" finds "flight" and "Flüge" finds "Flug"; a query is stemmed both ways and OR-ed.
A generated column, not an expression index: the deep-recency plan (walk conversations newest
first, test each one's messages) reads the vector instead of recomputing two stemmers per row.
"""

SEARCH_COLUMN_SQL = """
ALTER TABLE messaging_message ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, body) || to_tsvector('german'::regconfig, body)) STORED;
CREATE INDEX message_search ON messaging_message USING gin (search_vector);
CREATE INDEX contact_name_search ON messaging_contact USING gin (to_tsvector('simple'::regconfig, name));
"""

DROP_SEARCH_COLUMN_SQL = """
DROP INDEX IF EXISTS contact_name_search;
DROP INDEX IF EXISTS message_search;
ALTER TABLE messaging_message DROP COLUMN IF EXISTS search_vector;
"""
