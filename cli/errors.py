"""Errors of the `strangler` command, mapped to exit codes at one place (`cli.output.guarded`).

    CLIError                 something the user must fix; message says what (exit 1)
    ├── RouterUnreachable    no router answers at the admin URL
    ├── AdminRefused         the router refused an admin call (token, validation)
    └── StackError           a stack failure a command finds itself (also a
                             stack.errors.StackError)

The engines have their own roots, printed the same way by `guarded` (`USER_ERRORS`), so
an `except CLIError` does not catch them:

    stack.errors.StackError  the local stack engine (PortInUse, MissingBinary, NeverReady,
                             AlreadyRunning, PartMissing: re-exported here)
    loadgen.TrafficError     the traffic generator could not start
"""

from __future__ import annotations

from loadgen.engine import TrafficError
from stack import errors as stack_errors
from stack.errors import AlreadyRunning, MissingBinary, NeverReady, PartMissing, PortInUse

__all__ = [
    "USER_ERRORS", "AdminRefused", "AlreadyRunning", "CLIError", "MissingBinary", "NeverReady",
    "PartMissing", "PortInUse", "RouterUnreachable", "StackError", "TrafficError",
]


class CLIError(Exception):
    """A failure the user can act on; the message is printed as is, exit code 1."""

    exit_code = 1


class RouterUnreachable(CLIError):
    """No router answers at the admin URL."""


class AdminRefused(CLIError):
    """The router refused an admin call (missing token, invalid change)."""


class StackError(CLIError, stack_errors.StackError):
    """The stack failed in a way the command found itself (a process died, a stream stalled)."""


# What a command prints as `error: <message>` (never a traceback): its own and its engines'.
USER_ERRORS: tuple[type[Exception], ...] = (CLIError, stack_errors.StackError, TrafficError)
