"""One flip of write ownership in progress: where its files and databases are, what it has
done so far (`st`, kept by `handover.journal`), and its ledger lines ("kind": "ownership")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ownership
from control.ledger import actor, append_entry
from handover.front import Front
from handover.journal import save_state


@dataclass
class Flip:
    group: str
    to: str
    reason: str
    own_path: Path
    streams: Any  # cdc.config.StreamsFile
    ledger: Path
    front: Front | None  # the router or data plane serving the stack (handover/front.py)
    max_lag: float
    hold_max: float
    say: Callable[[str], None]
    st: dict[str, Any] = field(default_factory=dict)

    def load(self) -> ownership.Group:
        return ownership.load(self.own_path).group(self.group)

    @property
    def frm(self) -> str:
        return str(self.st["from"])

    def stream_of(self, side: str) -> Any:
        return self.streams.stream(self.load().side(side).stream)

    def url_of(self, side: str) -> str:
        return str(self.stream_of(side).source_url)  # a side's out-stream reads its database

    def record(self, phase: str, **extra: Any) -> None:
        if phase not in self.st["phases"]:
            self.st["phases"].append(phase)
        save_state(self.group, self.st)
        append_entry(self.ledger, {"kind": "ownership", "group": self.group, "phase": phase,
                                   "from": self.frm, "to": self.to, "reason": self.reason,
                                   "actor": actor(), **extra})
        self.say(f"{phase}: done" + (f" ({_brief(extra)})" if extra else ""))
        from cdc import faults

        faults.point(f"own.after_{phase}")  # tests crash the procedure exactly here


def _brief(extra: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in extra.items())
