"""CDC's Prometheus face: every stream's state file and its source's slot view, read per scrape.

Place in the flow: each `strangler cdc run` writes its metrics file about once a second
(cdc/metrics.py); `strangler cdc metrics --listen host:port` serves this module's collector,
which on each scrape reads those files, asks every PostgreSQL source for its slot's row in
`pg_replication_slots` (one short connection per source) and counts the dual writes per
ownership group (cdc/dualwrite.py). Nothing runs between scrapes, and the streams need no
listener of their own: one exporter per machine that runs streams (the files and the pids
in them are local; with the folder shared but not the pid namespace, a run whose file
goes stale is dead).

Series (labels `stream`, plus `part` = both | capture | apply for a Kafka stream's halves):

    strangler_cdc_stream_state{state}         1 for the state the stream is in (a stateset):
                                              starting snapshot streaming stopped failed, or
                                              dead (the file says running, its process is gone
                                              and the file is older than STALE_S)
    strangler_cdc_updated_timestamp_seconds   when the run last refreshed its file
    strangler_cdc_events_total                events applied since that run started
    strangler_cdc_lag_seconds                 age of the oldest source commit not yet applied
    strangler_cdc_wal_behind_bytes            WAL between the source's head and the stream
    strangler_cdc_dead_letters                events in the dead-letter table
    strangler_cdc_source_up                   1 if the slot view could be read
    strangler_cdc_slot_present{slot}          0: the slot is gone (the stream cannot resume)
    strangler_cdc_slot_active{slot}           a walsender holds it
    strangler_cdc_slot_retained_wal_bytes     WAL the server keeps for the slot (restart_lsn)
    strangler_cdc_slot_behind_bytes           WAL past confirmed_flush_lsn: the lag in bytes
                                              as the source sees it, live even when the run
                                              is dead
    strangler_cdc_slot_safe_wal_bytes         WAL left before the server invalidates the slot
                                              (only with max_slot_wal_keep_size)
    strangler_cdc_slot_wal_status{status}     reserved | extended | unreserved | lost (stateset)
    strangler_cdc_dual_writes{group}          keys changed on both sides within the window
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cdc import metrics
from cdc.config import StreamConfig, StreamsFile
from cdc.errors import CDCError

STATES = ("starting", "snapshot", "streaming", "stopped", "failed", "dead")
RUNNING = ("starting", "snapshot", "streaming")
WAL_STATUSES = ("reserved", "extended", "unreserved", "lost")
STALE_S = 5.0  # a run refreshes its file about once a second


@dataclass
class StreamView:
    """What one scrape saw of one stream: its run files (per part) and its slot."""

    stream: str
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # part → metrics document
    slot: dict[str, Any] | None = None  # slot_info(); None: no slot (or not PostgreSQL)
    slot_name: str = ""
    source_up: bool | None = None  # None: not a PostgreSQL source, nothing asked


def alive(pid: Any) -> bool:
    """Whether `pid` runs; a zombie (killed, not reaped) does not."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:stat.rfind(")") + 3] not in ("Z", "X")


def state_of(doc: dict[str, Any], now: float | None = None) -> str:
    """The run's state, `dead` when the file says running, its process is gone and the file
    is no longer refreshed. Both, because the exporter may share the state folder without
    sharing the pid namespace (another container): there a live run's pid is not found, but
    its file is fresh."""
    state = str(doc.get("state", "starting"))
    updated = float(doc["updated"]) if _number(doc.get("updated")) else 0.0
    stale = (time.time() if now is None else now) - updated > STALE_S
    if state in RUNNING and stale and not alive(doc.get("pid")):
        return "dead"
    return state if state in STATES else "failed"


def runs_of(cfg: StreamConfig, folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """The stream's metrics files: one (`both`), or a Kafka stream's two halves."""
    doc = metrics.load(cfg.name, folder)
    if doc is not None:
        return {"both": doc}
    return {part: d for part in ("capture", "apply") if (d := metrics.load(f"{cfg.name}.{part}", folder))}


def slot_of(cfg: StreamConfig) -> dict[str, Any] | None:
    """The slot's row as the source sees it (None: no such slot); CDCError if unreachable."""
    from cdc.sources.postgres import PostgresSource

    src = PostgresSource(cfg, [t.source for t in cfg.tables])
    try:
        return src.slot_info()
    finally:
        src.close()


def view(cfg: StreamConfig, folder: Path | None = None,
         slot_reader: Callable[[StreamConfig], dict[str, Any] | None] = slot_of) -> StreamView:
    v = StreamView(stream=cfg.name, runs=runs_of(cfg, folder))
    if cfg.source_kind == "postgres":
        v.slot_name = cfg.slot
        try:
            v.slot = slot_reader(cfg)
            v.source_up = True
        except CDCError:
            v.source_up = False
    return v


def families(views: Iterable[StreamView], dual_writes: dict[str, int] | None = None) -> list[Metric]:
    """The scrape's metric families (a pure function of what was read)."""
    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    sp = ["stream", "part"]
    state = gauge("strangler_cdc_stream_state", "1 for the state the stream's run is in "
                  "(dead: the file says running, its process is gone, the file is stale).", [*sp, "state"])
    updated = gauge("strangler_cdc_updated_timestamp_seconds", "When the run last refreshed "
                    "its metrics file (about once a second while it runs).", sp)
    events = CounterMetricFamily("strangler_cdc_events", "Events applied since the run started.", labels=sp)
    lag = gauge("strangler_cdc_lag_seconds", "Age of the oldest source commit not yet applied.", sp)
    behind = gauge("strangler_cdc_wal_behind_bytes", "WAL between the source's head and the "
                   "stream's position, as the run last measured it.", sp)
    dead_letters = gauge("strangler_cdc_dead_letters", "Events in the stream's dead-letter table.", ["stream"])
    source_up = gauge("strangler_cdc_source_up", "1 if the source's slot view could be read.", ["stream"])
    ss = ["stream", "slot"]
    present = gauge("strangler_cdc_slot_present", "1 while the replication slot exists; 0: it is "
                    "gone and the stream cannot resume.", ss)
    active = gauge("strangler_cdc_slot_active", "1 while a walsender holds the slot.", ss)
    retained = gauge("strangler_cdc_slot_retained_wal_bytes", "WAL the server keeps for the slot.", ss)
    slot_behind = gauge("strangler_cdc_slot_behind_bytes", "WAL written since the slot's "
                        "confirmed_flush_lsn: the stream's lag in bytes as the source sees it.", ss)
    safe = gauge("strangler_cdc_slot_safe_wal_bytes", "WAL the slot may still retain before the "
                 "server invalidates it (only with max_slot_wal_keep_size).", ss)
    wal_status = gauge("strangler_cdc_slot_wal_status", "1 for the slot's wal_status.", [*ss, "status"])
    for v in sorted(views, key=lambda v: v.stream):
        for part, doc in sorted(v.runs.items()):
            now = state_of(doc)
            for s in STATES:
                state.add_metric([v.stream, part, s], 1.0 if s == now else 0.0)
            if _number(doc.get("updated")):
                updated.add_metric([v.stream, part], float(doc["updated"]))
            if _number(doc.get("events")):
                events.add_metric([v.stream, part], float(doc["events"]))
            if _number(doc.get("lag_ms")):
                lag.add_metric([v.stream, part], float(doc["lag_ms"]) / 1000)
            if _number(doc.get("wal_bytes_behind")):
                behind.add_metric([v.stream, part], float(doc["wal_bytes_behind"]))
            # the apply end (or the single run) holds the dead-letter table
            if _number(doc.get("dead_letters")) and part in ("both", "apply"):
                dead_letters.add_metric([v.stream], float(doc["dead_letters"]))
        if v.source_up is not None:
            source_up.add_metric([v.stream], 1.0 if v.source_up else 0.0)
        if v.source_up:
            labels = [v.stream, v.slot_name]
            present.add_metric(labels, 1.0 if v.slot else 0.0)
            if v.slot:
                active.add_metric(labels, 1.0 if v.slot.get("active") else 0.0)
                retained.add_metric(labels, float(v.slot.get("retained_wal_bytes") or 0))
                slot_behind.add_metric(labels, float(v.slot.get("wal_bytes_behind") or 0))
                if _number(v.slot.get("safe_wal_size")):
                    safe.add_metric(labels, float(v.slot["safe_wal_size"]))
                for s in WAL_STATUSES:
                    wal_status.add_metric([*labels, s], 1.0 if v.slot.get("wal_status") == s else 0.0)
    dual = gauge("strangler_cdc_dual_writes", "Keys changed on both sides of an ownership group "
                 "within the detector's window.", ["group"])
    for group, n in sorted((dual_writes or {}).items()):
        dual.add_metric([group], float(n))
    return [state, updated, events, lag, behind, dead_letters, source_up, present, active, retained,
            slot_behind, safe, wal_status, dual]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class CDCCollector(Collector):
    """Reads streams.yaml, the state files and the slots on every `collect()` (each scrape)."""

    def __init__(self, load: Callable[[], StreamsFile], *, folder: Path | None = None,
                 dual_writes: Callable[[], dict[str, int]] | None = None,
                 slot_reader: Callable[[StreamConfig], dict[str, Any] | None] = slot_of) -> None:
        self.load = load
        self.folder = folder
        self.dual_writes = dual_writes
        self.slot_reader = slot_reader

    def collect(self) -> Iterator[Metric]:
        cfgs = list(self.load().streams.values())
        views = [view(c, self.folder, self.slot_reader) for c in cfgs]
        yield from families(views, self.dual_writes() if self.dual_writes else None)


def registry(collector: Collector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def text(collector: Collector) -> str:
    """One scrape, as Prometheus text (what `strangler cdc metrics` without --listen prints)."""
    return generate_latest(registry(collector)).decode()


class _Seen(Collector):
    def __init__(self, found: list[Metric]) -> None:
        self.found = found

    def collect(self) -> Iterator[Metric]:
        yield from self.found


def render(views: Iterable[StreamView], dual_writes: dict[str, int] | None = None) -> str:
    """Prometheus text of what was read (for tests and one-off views)."""
    return text(_Seen(families(views, dual_writes)))


def serve(collector: Collector, host: str, port: int, *, ready: Callable[[int], None] | None = None) -> None:
    """Serve /metrics on host:port until SIGTERM or SIGINT."""
    os.environ.setdefault("PGCONNECT_TIMEOUT", "3")  # an unreachable source must not hang a scrape
    server, thread = start_http_server(port, addr=host, registry=registry(collector))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready(server.server_port)
    try:
        stop.wait()
    finally:
        with contextlib.suppress(Exception):
            server.shutdown()
        server.server_close()
        thread.join(5)
