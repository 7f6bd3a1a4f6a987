"""The commands' own error: `CLIError`, a `control.errors.ControlError` raised by a command
itself (bad arguments the parser cannot see, a file it cannot read). `cli.output.guarded`
prints it, and every engine's error (`control.errors.USER_ERRORS`), as `error: <message>`
with its exit code.
"""

from __future__ import annotations

from control.errors import ControlError


class CLIError(ControlError):
    """A failure the user can act on; the message is printed as is, exit code 1."""
