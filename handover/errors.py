"""Errors of the write-ownership handover (`handover/`).

    HandoverError        (a control.errors.ControlError) the handover stopped; the message says what to do
    ├── Refused          a precondition is not met and nothing was changed (exit 3, or the code given:
    │                    2 for a name the files do not know, 1 for a lock held or a flip already made)
    ├── PhaseFailed      a phase failed after something changed; the procedure undoes what it did
    └── IdsUsage         a group, side or id block the files do not know (exit 2)
"""

from __future__ import annotations

from control.errors import ControlError


class HandoverError(ControlError):
    """The handover stopped; the message says what to do (exit 1)."""


class Refused(HandoverError):
    """A precondition is not met; nothing was changed."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PhaseFailed(HandoverError):
    """A phase failed after something changed; the caller undoes."""


class IdsUsage(HandoverError):
    """A group, side or block the files do not know (exit 2)."""

    exit_code = 2
