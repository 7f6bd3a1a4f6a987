"""How a sink tags its writes so that no stream echoes them back (loop-free reverse sync).

PostgreSQL: the sink's session runs under the replication origin ``strangler_<stream>``;
logical decoding reports it with every change. SQLite has no origins: the sink inserts its
stream name into :data:`SQLITE_MARKER` as the first statement of every target transaction
and deletes it as the last before COMMIT (one writer at a time, so no other connection ever
sees the row); the source's triggers record it with each change, and DB guard triggers let
the sink pass by it. A source skips only the tags of the streams that write into its
database from its own target, its reverse (:func:`cdc.config.feeding`), so a chain
A -> B -> C still carries A's changes to C.
"""

from __future__ import annotations

ORIGIN_PREFIX = "strangler_"
SQLITE_MARKER = "strangler_cdc_origin"
SQLITE_MARKER_DDL = f"CREATE TABLE IF NOT EXISTS {SQLITE_MARKER} (stream TEXT NOT NULL)"


def origin_name(stream: str) -> str:
    """The PostgreSQL replication origin a stream's sink writes under."""
    return ORIGIN_PREFIX + stream
