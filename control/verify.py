"""`strangler verify` as an engine: compare a stream's target with its source, keep the
result as the stream's last verify (`control.streamcheck`, read by `own` and the read gate),
and repair by re-copying the differing tables through the running stream.

The comparison itself is cdc/verify.py (the data-diff method); this module opens both
databases for it and drives the repair. Raises `cdc.errors.ConfigError` / `CDCError`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from cdc import config
from cdc.errors import CDCError
from cdc.pipeline import open_stream
from control.streamcheck import live, save_verify


def _raw(url: str) -> Any:
    if url.startswith("sqlite"):
        return sqlite3.connect(url.split("///", 1)[1])
    import psycopg2

    from cdc.sources.postgres import libpq_dsn

    return psycopg2.connect(libpq_dsn(url))


def run_verify(cfg: config.StreamConfig, tables: list[str] | None = None, *, chunk: int = 10_000,
               recheck_wait: float = 1.0) -> list[Any]:
    """Compare `cfg`'s targets with their sources (cdc/verify.py); keeps the result as the
    stream's last verify (read by `own` and the read gate). Raises ConfigError / CDCError."""
    from cdc.verify import verify_stream

    for t in tables or []:
        cfg.table(t)
    source, engine, mappings = open_stream(cfg)
    source.close()
    engine.dispose()
    src, tgt = _raw(cfg.source_url), _raw(cfg.target_url)
    try:
        diffs = verify_stream(cfg, mappings, src, tgt, tables=tables, chunk=chunk,
                              recheck_wait=recheck_wait)
    finally:
        src.close()
        tgt.close()
    save_verify(cfg.name, verify_document(cfg.name, diffs))
    return diffs


def verify_document(stream: str, diffs: list[Any]) -> dict[str, Any]:
    return {"stream": stream, "equal": all(d.equal for d in diffs), "tables": [d.as_dict() for d in diffs]}


def repair_command(stream: str, diffs: list[Any]) -> str:
    return " ".join(["strangler verify", stream, *(d.table for d in diffs if not d.equal), "--repair"])


def repair(cfg: config.StreamConfig, diffs: list[Any], *, timeout: float,
           say: Callable[[str], None] = lambda line: None) -> None:
    """Re-copy the differing tables through the running stream (a durable re-snapshot request,
    DBLog windows: concurrent changes win over the copy; ghost rows swept) and wait until the
    stream has finished the copy."""
    from cdc import drain

    names = [d.table for d in diffs if not d.equal]
    lv = live(cfg.name)
    if not lv.running:
        raise CDCError(f"repair re-copies through the running stream, and stream {cfg.name} is "
                       f"{lv.state}: start it (`strangler cdc run {cfg.name}` or `strangler up`), "
                       f"then run `{repair_command(cfg.name, diffs)}` again")
    at = drain.mark(cfg, {"snapshot": names})
    say(f"repair: re-copying {', '.join(names)} through stream {cfg.name}")
    deadline = time.monotonic() + timeout
    while not (drain.wait_applied_to(cfg, at, timeout=max(0.0, deadline - time.monotonic()))
               and drain.snapshot_done(cfg, names)):
        if time.monotonic() >= deadline:
            raise CDCError(f"stream {cfg.name} did not finish re-copying {', '.join(names)} within "
                           f"{timeout:.0f} s; see `strangler cdc status {cfg.name}`; the copy goes on")
        time.sleep(0.1)
