"""Errors of the `strangler` command, mapped to exit codes at one place (`cli.output.fail`).

    CLIError                 something the user must fix; message says what (exit 1)
    ├── StackError           the local stack could not be started or inspected
    │   ├── PortInUse        a port a process needs is taken (names port and process)
    │   ├── MissingBinary    a command the stack runs is not installed
    │   ├── NeverReady       a process exited or never answered its readiness URL
    │   └── AlreadyRunning   `up` while a stack from this state folder still runs
    ├── RouterUnreachable    no router answers at the admin URL
    ├── AdminRefused         the router refused an admin call (token, validation)
    └── PartMissing          a part the command wires (router, cdc, catalog, kafka)
                             is not installed in this checkout yet
"""

from __future__ import annotations


class CLIError(Exception):
    """A failure the user can act on; the message is printed as is, exit code 1."""

    exit_code = 1


class StackError(CLIError):
    """The local stack could not be started, stopped or inspected."""


class PortInUse(StackError):
    """A port a process of the stack needs is already taken."""


class MissingBinary(StackError):
    """A command the stack runs is not installed."""


class NeverReady(StackError):
    """A process exited early or never answered its readiness URL in time."""


class AlreadyRunning(StackError):
    """A stack started from this state folder is still running."""


class RouterUnreachable(CLIError):
    """No router answers at the admin URL."""


class AdminRefused(CLIError):
    """The router refused an admin call (missing token, invalid change)."""


class PartMissing(CLIError):
    """A part of Strangler this command needs is not present in this checkout."""
