"""Errors of the stack engine; `cli.output.guarded` prints them and exits with `exit_code`.

    StackError               the local stack could not be started, stopped or inspected (exit 1)
    ├── PortInUse            a port a process needs is taken (names port and process)
    ├── MissingBinary        a command the stack runs is not installed
    ├── NeverReady           a process exited or never answered its readiness URL
    ├── AlreadyRunning       `up` while a stack from this state folder still runs
    └── PartMissing          a part the stack wires (router, cdc, catalog, kafka) is not
                             installed in this checkout
"""

from __future__ import annotations


class StackError(Exception):
    """The local stack could not be started, stopped or inspected; the message says what to do."""

    exit_code = 1


class PortInUse(StackError):
    """A port a process of the stack needs is already taken."""


class MissingBinary(StackError):
    """A command the stack runs is not installed."""


class NeverReady(StackError):
    """A process exited early or never answered its readiness URL in time."""


class AlreadyRunning(StackError):
    """A stack started from this state folder is still running."""


class PartMissing(StackError):
    """A part of Strangler the stack needs is not present in this checkout."""
