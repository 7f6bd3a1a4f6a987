"""`strangler cdc run|status|snapshot|drop` and `strangler verify`: the CDC commands.

Results on stdout, progress on stderr; `--json` prints exactly one JSON document.
Exit codes: 0 ok, 1 failed, 2 usage (unknown stream/table, bad streams.yaml), 3 verify found
differences.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from typing import Annotated, Any

import typer

from cdc import checkpoint, config, metrics
from cdc.errors import CDCError, ConfigError, SchemaChanged
from cdc.health import dual_writes, stream_report
from cdc.pipeline import Pipeline, open_stream, tune_gc_for_streaming
from cli.output import duration_ms
from control.verify import repair, repair_command, run_verify, verify_document

cdc_app = typer.Typer(help="Change-data-capture streams declared in streams.yaml.", no_args_is_help=True)

StreamsOpt = Annotated[str | None, typer.Option("--streams", envvar="STRANGLER_STREAMS",
                                                help="Path of streams.yaml (default ./streams.yaml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
PartOpt = Annotated[str, typer.Option("--part", help=(
    "Kafka streams: capture (source -> Kafka) | apply (Kafka -> target; run one per machine: the "
    "holder of the stream's lease applies, the others stand by and take over within "
    "transport.lease_seconds when it dies) | both."))]


def _err(msg: str, code: int) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _stream(streams: str | None, name: str) -> config.StreamConfig:
    try:
        return config.load(streams).stream(name)
    except ConfigError as exc:
        raise _err(str(exc), 2) from None


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


@cdc_app.command("run")
def run(stream: str, streams: StreamsOpt = None, part: PartOpt = "both") -> None:
    """Snapshot (if new) then stream STREAM until SIGTERM/SIGINT (finishes the batch)."""
    cfg = _stream(streams, stream)
    _logging()
    tune_gc_for_streaming()
    if cfg.transport.get("kind") == "kafka":
        from cli.cdc_kafka import run_kafka

        return run_kafka(cfg, part)
    if part != "both":
        raise _err(f"--part {part} needs `transport: kafka` for stream {stream}; "
                   "a direct stream runs both halves in one process", 2)
    last_log = [0.0]

    def tick(m: metrics.StreamMetrics) -> None:
        m.save()
        if time.monotonic() - last_log[0] >= 10:  # progress on stderr every 10 s
            last_log[0] = time.monotonic()
            typer.echo(f"cdc {stream}: {m.state} events={m.events} ({m.events_per_s}/s) "
                       f"lag={duration_ms(m.lag_ms)} wal_behind={m.wal_bytes_behind} "
                       f"dead_letters={m.dead_letters} position={m.position or '-'}", err=True)

    pipe = Pipeline(cfg, on_tick=tick)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pipe.stop())
    typer.echo(f"cdc {stream}: running (Ctrl-C stops cleanly)", err=True)
    try:
        pipe.run()
    except SchemaChanged as exc:
        raise _err(str(exc), 1) from None
    except ConfigError as exc:
        raise _err(str(exc), 2) from None
    except CDCError as exc:
        raise _err(str(exc), 1) from None
    typer.echo(f"cdc {stream}: stopped at {pipe.metrics.position or 'start'}", err=True)


@cdc_app.command("metrics")
def metrics_text(streams: StreamsOpt = None, listen: Annotated[str | None, typer.Option(
        "--listen", help="Serve /metrics on HOST:PORT until stopped (for Prometheus to scrape), "
        "instead of printing one scrape.")] = None) -> None:
    """Every stream's metrics, its slot's WAL health and the dual writes per ownership group,
    as Prometheus text; each scrape reads the state files and the sources' slot views anew."""
    from cdc import prom

    try:
        config.load(streams)
        where = _host_port(listen) if listen else None
    except (ConfigError, ValueError) as exc:
        raise _err(str(exc), 2) from None
    collector = prom.CDCCollector(lambda: config.load(streams),
                                  dual_writes=lambda: dual_writes(streams)["groups"])
    if where is None:
        typer.echo(prom.text(collector), nl=False)
        return
    prom.serve(collector, *where, ready=lambda port: typer.echo(
        f"cdc metrics: serving http://{where[0]}:{port}/metrics", err=True))


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {value!r}: give HOST:PORT, e.g. 127.0.0.1:9187")
    return host.strip("[]") or "0.0.0.0", int(port)


@cdc_app.command("status")
def status(stream: Annotated[str | None, typer.Argument()] = None, streams: StreamsOpt = None,
           as_json: JsonOpt = False) -> None:
    """Position, lag, events/s, dead letters and snapshot state per stream."""
    try:
        sf = config.load(streams)
        cfgs = [sf.stream(stream)] if stream else list(sf.streams.values())
    except ConfigError as exc:
        raise _err(str(exc), 2) from None
    rows = [stream_report(c) for c in cfgs]
    if as_json:
        typer.echo(json.dumps({"streams": rows}, default=str))
        return
    for r in rows:
        run_ = r.get("running") or {}
        typer.echo(f"{r['stream']}: {run_.get('state', 'not running')}  position={r.get('position')}  "
                   f"lag={duration_ms(run_.get('lag_ms'))}  events/s={run_.get('events_per_s')}  "
                   f"dead_letters={r.get('dead_letters')}  wal_behind={(r.get('slot') or {}).get('wal_bytes_behind')}"
                   + (f"  wal_status={r['slot']['wal_status']}" if r.get("slot") else "")
                   + (f"  error={r['error']}" if r.get("error") else ""))
        if r.get("lease"):
            lease = r["lease"]
            typer.echo(f"  applied by {lease['holder']} (lease epoch {lease['epoch']}, {lease['state']}, "
                       f"{lease['expires_in_s']}s left)"
                       + (f"; standing by: pid {', '.join(str(s['pid']) for s in r['standby'])}"
                          if r.get("standby") else ""))
        if r.get("warning"):
            typer.echo(f"  WARNING: {r['warning']}")


@cdc_app.command("snapshot")
def snapshot(stream: str, tables: Annotated[list[str] | None, typer.Argument()] = None,
             streams: StreamsOpt = None) -> None:
    """Re-copy TABLEs (default: all) of STREAM while it streams (DBLog watermarks)."""
    cfg = _stream(streams, stream)
    names = tables or [t.source for t in cfg.tables]
    try:
        for t in names:
            cfg.table(t)
    except ConfigError as exc:
        raise _err(str(exc), 2) from None
    from cdc.sources import make_source

    src = make_source(cfg, [t.source for t in cfg.tables])
    try:
        src.emit_message(json.dumps({"stream": cfg.name, "snapshot": names}).encode())
    except CDCError as exc:
        raise _err(str(exc), 1) from None
    finally:
        src.close()
    typer.echo(f"re-snapshot of {', '.join(names)} requested; the running stream copies them")


@cdc_app.command("install")
def install(stream: str, streams: StreamsOpt = None) -> None:
    """Start capturing STREAM's changes now (slot + publication, or SQLite triggers), without
    running it; the first `cdc run` then copies the tables while streaming."""
    cfg = _stream(streams, stream)
    try:
        source, engine, _mappings = open_stream(cfg)  # validates the mapping first
        engine.dispose()
        try:
            source.install()
        finally:
            source.close()
    except ConfigError as exc:
        raise _err(str(exc), 2) from None
    except CDCError as exc:
        raise _err(str(exc), 1) from None
    typer.echo(f"capturing changes for stream {stream}; run `strangler cdc run {stream}`")


@cdc_app.command("drop")
def drop(stream: str, streams: StreamsOpt = None) -> None:
    """Remove STREAM's slot and publication (or triggers and changelog) and its checkpoints."""
    cfg = _stream(streams, stream)
    from cdc.sinks.sqlalchemy import make_engine
    from cdc.sources import make_source

    src = make_source(cfg, [t.source for t in cfg.tables])
    try:
        src.drop()
    except CDCError as exc:
        raise _err(str(exc), 1) from None
    finally:
        src.close()
    engine = make_engine(cfg.target_url)
    checkpoint.ensure(engine)
    with engine.begin() as conn:
        checkpoint.clear(conn, cfg.name)
    engine.dispose()
    if cfg.transport.get("kind") == "kafka":  # the capture half's own progress too
        from cdc.transport import kafka_progress
        from cdc.transport.kafka_topics import KafkaSettings

        try:
            kafka_progress.forget(KafkaSettings.from_stream(cfg), [t.source for t in cfg.tables])
        except CDCError as exc:
            raise _err(f"{exc}; the slot and the target's checkpoints are gone already: run "
                       f"`strangler cdc drop {stream}` again once Kafka is back", 1) from None
    typer.echo(f"dropped stream {stream} (target rows and dead letters kept)")


def _print_diffs(diffs: list[Any]) -> None:
    for d in diffs:
        state = "equal" if d.equal else (f"DIFFERENT: {len(d.missing)} missing, {len(d.extra)} extra, "
                                         f"{len(d.different)} different")
        typer.echo(f"{d.table} -> {d.target}: {d.source_rows} rows, {state}")
        for label, keys in (("missing", d.missing), ("extra", d.extra), ("different", d.different)):
            if keys:
                typer.echo(f"  {label}: {keys[:20]}{' ...' if len(keys) > 20 else ''}")


def verify(stream: str, tables: Annotated[list[str] | None, typer.Argument()] = None,
           streams: StreamsOpt = None, as_json: JsonOpt = False,
           chunk: Annotated[int, typer.Option(help="Rows per checksum range.")] = 10_000,
           recheck_wait: Annotated[float, typer.Option(help="Seconds to wait before rechecking differing rows.")] = 1.0,
           do_repair: Annotated[bool, typer.Option("--repair", help="Make the target equal to the source: re-copy the differing tables through the running stream (extra rows deleted), then verify again.")] = False,
           repair_timeout: Annotated[float, typer.Option(help="Longest wait for the re-copy (seconds).")] = 300.0) -> None:
    """Compare STREAM's target tables with their mapped sources; exit 3 listing differing keys.

    The result is kept as the stream's last verify (`strangler own` and the read gate of
    `shift`/`canary` read it). With --repair, differing tables are re-copied while the stream
    runs and verified again; exit 0 once equal.
    """
    cfg = _stream(streams, stream)
    repaired: list[Any] = []
    try:
        diffs = run_verify(cfg, tables, chunk=chunk, recheck_wait=recheck_wait)
        if do_repair and not all(d.equal for d in diffs):
            repaired = diffs
            if not as_json:
                _print_diffs(diffs)
            repair(cfg, diffs, timeout=repair_timeout,
                   say=lambda line: typer.echo(line, err=True))
            diffs = run_verify(cfg, [d.table for d in diffs if not d.equal], chunk=chunk,
                               recheck_wait=recheck_wait)
    except ConfigError as exc:
        raise _err(str(exc), 2) from None
    except CDCError as exc:
        raise _err(str(exc), 1) from None
    equal = all(d.equal for d in diffs)
    if as_json:
        doc = verify_document(stream, diffs)
        if repaired:
            doc["repaired"] = verify_document(stream, repaired)["tables"]
        if not equal:
            doc["repair"] = repair_command(stream, diffs)
        typer.echo(json.dumps(doc, default=str))
    else:
        if repaired:
            typer.echo("after the repair:")
        _print_diffs(diffs)
        if not equal:
            typer.echo(f"repair: {repair_command(stream, diffs)}")
    if not equal:
        raise typer.Exit(3)
