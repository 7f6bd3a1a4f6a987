"""Errors of the operator's side of a running stack (`control/`, `handover/`).

    ControlError             something the operator must fix; the message says what (exit 1)
    ├── RouterUnreachable    no router answers at the admin URL
    ├── AdminRefused         the router refused an admin call (token, validation)
    ├── GateClosed           a raise toward a copy that is behind or differs (exit 3)
    └── StackError           a stack failure found by watching it (a process died, a stream
                             stalled); also a stack.errors.StackError

The stack engine and the traffic generator have roots of their own; `USER_ERRORS` is every
root whose message is printed as `error: <message>` (never a traceback) and whose
`exit_code` is the exit code: the commands (`cli.output.guarded`) and the walkthrough catch it.
"""

from __future__ import annotations

from loadgen.engine import TrafficError
from stack import errors as stack_errors


class ControlError(Exception):
    """A failure the operator can act on; the message is printed as is, exit code 1."""

    exit_code = 1


class RouterUnreachable(ControlError):
    """No router answers at the admin URL."""


class AdminRefused(ControlError):
    """The router refused an admin call (missing token, invalid change)."""


class GateClosed(ControlError):
    """A raise toward a copy that is behind or differs (exit 3: a gate not met)."""

    exit_code = 3


class StackError(ControlError, stack_errors.StackError):
    """The stack failed in a way its watcher found itself (a process died, a stream stalled)."""


USER_ERRORS: tuple[type[Exception], ...] = (ControlError, stack_errors.StackError, TrafficError)
