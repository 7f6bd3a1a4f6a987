"""`strangler cdc run STREAM --part capture|apply|both` for streams with `transport: kafka`.

capture: source -> Kafka; apply: Kafka -> target; both: the two in one process. Each part is
restartable on its own (kill -9 included): capture resumes from the slot, apply from the
offsets stored in the target database. Several apply processes may run: the one holding the
stream's lease in the target applies, the others stand by (cdc/lease.py).
"""

from __future__ import annotations

import signal
import threading

import typer

from cdc.config import StreamConfig
from cdc.errors import CDCError, ConfigError, SchemaChanged
from cdc.pipeline import tune_gc_for_streaming
from cdc.transport import kafka_apply, kafka_run


def run_kafka(cfg: StreamConfig, part: str) -> None:
    if part not in kafka_run.PARTS:
        typer.echo(f"error: --part must be one of {', '.join(kafka_run.PARTS)}, not {part!r}", err=True)
        raise typer.Exit(2)
    if part != "capture":  # it buffers messages ahead of the sink
        tune_gc_for_streaming(young=kafka_apply.GC_YOUNG)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    typer.echo(f"cdc {cfg.name}: running {part} over Kafka (Ctrl-C stops cleanly)", err=True)
    try:
        kafka_run.run(cfg, part, stop)
    except SchemaChanged as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except CDCError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"cdc {cfg.name}: {part} stopped", err=True)
