"""Per-stream metrics: events/s, lag (ms and WAL bytes), dead letters, snapshot progress.

The running pipeline keeps one :class:`StreamMetrics` and writes it about once a second to
``.strangler/cdc/<stream>.json`` so ``strangler cdc status`` can show it from another
process.

cdc/prom.py reads those files on each scrape and serves them, with the sources' slot views and
the dual writes, as Prometheus metrics (`strangler cdc metrics --listen`).

Lag is the time since the oldest source commit not yet applied (:class:`LagTracker`), not
the age of the last applied event: a stalled stream shows a lag that grows, and 0 means
everything read is applied and the source had nothing older waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cdc.events import ChangeEvent, Position

STATE_DIR = Path(os.environ.get("STRANGLER_STATE_DIR", ".strangler")) / "cdc"


@dataclass
class StreamMetrics:
    stream: str
    state: str = "starting"  # starting | snapshot | streaming | stopped | failed
    events: int = 0
    events_per_s: float = 0.0
    lag_ms: float = 0.0
    wal_bytes_behind: int | None = None
    slot: dict[str, Any] | None = None  # the source's slot as last read (wal_status, retained WAL); None: no slot
    dead_letters: int = 0
    position: str = ""
    error: str = ""
    snapshot: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0
    pid: int = field(default_factory=os.getpid)
    _window: list[tuple[float, int]] = field(default_factory=list, repr=False)

    def count(self, n: int) -> None:
        self.events += n

    def observe_lag(self, source_ts_ms: int) -> None:
        if source_ts_ms:
            self.lag_ms = max(0.0, time.time() * 1000 - source_ts_ms)

    def tick(self) -> None:
        now = time.monotonic()
        self._window.append((now, self.events))
        while len(self._window) > 2 and now - self._window[0][0] > 10:
            self._window.pop(0)
        t0, e0 = self._window[0]
        self.events_per_s = round((self.events - e0) / (now - t0), 1) if now > t0 else 0.0
        self.updated = time.time()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_window", None)
        return d

    def save(self, folder: Path | None = None) -> None:
        folder = folder or STATE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{self.stream}.json.tmp"
        tmp.write_text(json.dumps(self.as_dict()))
        os.replace(tmp, folder / f"{self.stream}.json")


class LagTracker:
    """Commit time of the oldest change published and not yet durable downstream.

    Kept per published batch (its last position and first commit time), so the cost is per
    batch, not per row; "durable" is the transport's: applied and committed by the sink
    (direct), or acknowledged by the brokers (the Kafka capture half).
    """

    def __init__(self) -> None:
        self._pending: deque[tuple[Position, int]] = deque()  # (last position of a batch, ts_ms)

    def published(self, events: Sequence[ChangeEvent]) -> None:
        # Changes only: copied rows carry the time they were read (as Debezium's do), which is
        # no commit, and a copy's positions are never durable where the stream's are.
        ts = next((e.ts_ms for e in events if e.ts_ms and e.snapshot == "false"), 0)
        if ts:
            self._pending.append((events[-1].position, ts))

    def lag_ms(self, durable: Position | None, source_ms: float = 0.0) -> float:
        """`source_ms`: what the source itself knows is waiting (e.g. unread changelog rows)."""
        pending = self._pending
        while pending and durable is not None and pending[0][0] <= durable:
            pending.popleft()
        ours = max(0.0, time.time() * 1000 - pending[0][1]) if pending else 0.0
        return round(max(ours, source_ms), 1)


STANDBY = ".apply.standby."  # <stream>.apply.standby.<holder>: a stand-by applier's metrics


def forget(stream: str, folder: Path | None = None) -> None:
    """Remove a metrics file (a process that no longer plays that part)."""
    with contextlib.suppress(FileNotFoundError):
        ((folder or STATE_DIR) / f"{stream}.json").unlink()


def load_all(prefix: str, folder: Path | None = None) -> list[dict[str, Any]]:
    """Every metrics file named ``<prefix>*`` (the stand-by appliers of a stream)."""
    out = []
    for path in sorted((folder or STATE_DIR).glob(f"{prefix}*.json")):
        m = load(path.name[:-len(".json")], folder)
        if m is not None:
            out.append(m)
    return out


def load(stream: str, folder: Path | None = None) -> dict[str, Any] | None:
    path = (folder or STATE_DIR) / f"{stream}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None
