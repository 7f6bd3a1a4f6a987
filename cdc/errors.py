"""Errors of the CDC engine: one root, a subclass only where a caller acts differently.

    CDCError                  anything the CDC engine refuses or cannot do
    ├── ConfigError           streams.yaml or a mapping is wrong; names the key path and the fix
    ├── SchemaChanged         a source table changed shape mid-stream; the stream stopped with
    │                         its position intact (fix the mapping, then restart)
    ├── SourceError           the source database failed or refused (slot, publication, triggers)
    └── SinkError             the target database failed for a whole batch (not one poison row:
                              those go to the dead-letter table)

psycopg2 / sqlite3 / SQLAlchemy errors are translated into these at the module that calls them.
"""

from __future__ import annotations


class CDCError(Exception):
    """Root of every error the CDC engine raises on purpose."""


class ConfigError(CDCError):
    """streams.yaml or a stream's mapping is invalid; the message names the key path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class SchemaChanged(CDCError):
    """A source table's columns changed in a way the mapping does not cover."""


class SourceError(CDCError):
    """The source database failed or refused an operation."""


class SinkError(CDCError):
    """The target database failed for a whole batch."""
