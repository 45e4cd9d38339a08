"""The full-text index over messages (migration collab.0002), kept in one place with the
expressions the search selector must repeat exactly.

Each message gets one stored `search_vector`: its body stemmed as English and as German, so
"flights" finds "flight" and "Flüge" finds "Flug"; a query is stemmed both ways and OR-ed.
A generated column, not an expression index: the deep-recency plan (walk conversations newest
first, test each one's messages) reads the vector instead of recomputing two stemmers per row.

The index keeps a small pending list (`MESSAGE_SEARCH_PENDING_LIST_SQL`, migration collab.0005):
a GIN index collects new entries in an unsorted list and merges it into the index when it passes
`gin_pending_list_limit` — in whichever insert passes it, while that insert's transaction holds
its locks. At PostgreSQL's default of 4 MB that was a send group merging ~20 s of messages
(1,000 a second) in ~85 ms while it held its business's stream counter: every writer of the
business waited, each time (issue 9). At 128 kB a merge takes ~5 ms, for the same work overall.
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

# kB: see the module docstring (an insert-only probe of 40,000 ten-row groups: the longest group
# 85-90 ms at 4 MB, 9 ms at 256 kB, 4.5-4.8 ms at 128 kB; the total time within 5%).
MESSAGE_SEARCH_PENDING_LIST_KB = 128
# The contacts' name index too: a contact is written by the send group that makes its
# conversation (a notification run makes thousands).
MESSAGE_SEARCH_PENDING_LIST_SQL = f"""
ALTER INDEX message_search SET (gin_pending_list_limit = {MESSAGE_SEARCH_PENDING_LIST_KB});
ALTER INDEX contact_name_search SET (gin_pending_list_limit = {MESSAGE_SEARCH_PENDING_LIST_KB});
"""
MESSAGE_SEARCH_PENDING_LIST_RESET_SQL = """
ALTER INDEX message_search RESET (gin_pending_list_limit);
ALTER INDEX contact_name_search RESET (gin_pending_list_limit);
"""
