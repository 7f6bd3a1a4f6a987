"""The one error of dataplane/: a routes file that cannot be exported, or a data plane that
would not start. The message says what to do."""

from __future__ import annotations


class ExportError(Exception):
    """Nothing was written (or started); the message names the cause and the fix."""
