"""Is a stream fit to cut over to? Running, lag within budget, last `verify` found no difference.

Read by `strangler own` (preflight) and the read gate of `shift` and `canary`. The live
figures come from the metrics file the running `cdc run` writes (``.strangler/cdc/<stream>.json``,
a Kafka stream's apply half for end-to-end lag); `strangler verify` stores its last result in
``.strangler/verify/<stream>.json`` (`save_verify`) so a gate can read it without re-running.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from stack import state

RUNNING = ("streaming",)


@dataclass(frozen=True)
class Live:
    state: str  # streaming | snapshot | starting | stopped | failed | dead | not running
    lag_ms: float | None

    @property
    def running(self) -> bool:
        return self.state in RUNNING


def _alive(pid: Any) -> bool:
    from router.rollouts import alive  # a zombie is not running

    return alive(pid)


def live(stream: str) -> Live:
    """The stream's state and lag as its running process last wrote them."""
    from cdc import metrics

    folder = state.state_dir() / "cdc"
    doc = metrics.load(stream, folder) or metrics.load(f"{stream}.apply", folder)
    if not doc:
        return Live("not running", None)
    st = str(doc.get("state") or "unknown")
    if st in ("starting", "snapshot", "streaming") and not _alive(doc.get("pid")):
        st = "dead"
    lag = doc.get("lag_ms")
    # a metrics file not rewritten for a while: the process is stuck; its lag keeps growing
    stale_ms = max(0.0, (time.time() - float(doc.get("updated") or 0)) * 1000)
    lag_ms = None if lag is None else float(lag) + (stale_ms if stale_ms > 5000 else 0.0)
    return Live(st, lag_ms)


def lag_problem(stream: str, max_lag_s: float) -> str | None:
    """Why the stream is not fit (not running, or behind by more than the budget), or None."""
    lv = live(stream)
    if not lv.running:
        return (f"stream {stream} is {lv.state}; start it: `strangler cdc run {stream}` (or "
                "`strangler up`)")
    if lv.lag_ms is not None and lv.lag_ms > max_lag_s * 1000:
        return (f"stream {stream} is {lv.lag_ms / 1000:.1f} s behind (budget {max_lag_s:g} s); wait "
                f"for it to catch up (`strangler cdc status {stream}`) or raise --max-lag")
    return None


def _verify_file(stream: str) -> Any:
    folder = state.state_dir() / "verify"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stream}.json"


def save_verify(stream: str, document: dict[str, Any]) -> None:
    """Keep `strangler verify`'s result (one JSON document) as the stream's last verify."""
    path = _verify_file(stream)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**document, "at": round(time.time(), 3)}, default=str))
    os.replace(tmp, path)


def last_verify(stream: str) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(_verify_file(stream).read_text())
    except (OSError, ValueError):
        return None
    return doc


def verify_problem(stream: str) -> str | None:
    """Why the last verify forbids a cut-over (it found differences), or None."""
    doc = last_verify(stream)
    if not doc or doc.get("equal", True):
        return None
    counts = {k: sum(len(t.get(k) or []) for t in doc.get("tables", [])) for k in ("missing", "extra", "different")}
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(doc.get("at") or 0)))
    return (f"the last `strangler verify {stream}` ({when}) found {counts['missing']} missing, "
            f"{counts['extra']} extra and {counts['different']} different rows; repair them: "
            f"`strangler verify {stream} --repair`")
