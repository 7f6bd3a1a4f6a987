"""How the streams and ownership groups are doing, for the operator (`strangler cdc status`,
`strangler status`, the metrics exporter).

`stream_report`: one stream's running figures, target position, dead letters and slot
health; `slot_warnings`: the PostgreSQL slots close to (or past) invalidation;
`dual_writes`: keys changed on both sides of an ownership group lately (cdc/dualwrite.py);
`ownership_status`: who writes each group and whether each side's database refuses the
non-owner's writes (cdc/guard.py). Each shows what it can and names what it cannot read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

import ownership
from cdc import checkpoint, config, metrics
from cdc.errors import CDCError, ConfigError
from cdc.prom import alive  # a zombie is not running


def _running(live: dict[str, Any]) -> dict[str, Any]:
    running = {k: live.get(k) for k in ("state", "events", "events_per_s", "lag_ms", "wal_bytes_behind",
                                        "dead_letters", "error", "pid", "updated")}
    if live.get("state") in ("starting", "snapshot", "streaming") and not alive(live.get("pid")):
        running["state"] = "dead"  # the process is gone without a clean stop
    return running


def stream_report(cfg: config.StreamConfig) -> dict[str, Any]:
    """One stream as `strangler cdc status` shows it: the running process's figures (or each
    Kafka half's), the target's position, dead letters and snapshot state, the slot's WAL
    health; what cannot be read is in "error"."""
    out: dict[str, Any] = {"stream": cfg.name, "owner": cfg.owner, "source": cfg.source_kind,
                           "tables": {t.source: t.target for t in cfg.tables}}
    live = metrics.load(cfg.name)
    if live:
        out["running"] = _running(live)
    else:  # a Kafka stream runs as two halves, each with its own metrics file
        halves = {part: m for part in ("capture", "apply") if (m := metrics.load(f"{cfg.name}.{part}"))}
        if halves:
            out["halves"] = {part: _running(m) for part, m in halves.items()}
            # end-to-end figures (lag, events applied) are the apply half's
            out["running"] = dict(out["halves"].get("apply") or out["halves"]["capture"])
            out["running"]["state"] = " / ".join(f"{p} {h['state']}" for p, h in out["halves"].items())
        standbys = [m for m in metrics.load_all(f"{cfg.name}{metrics.STANDBY}") if alive(m.get("pid"))]
        if standbys:  # apply processes waiting to take over the stream's lease
            out["standby"] = [{"pid": m["pid"], "updated": m.get("updated")} for m in standbys]
    try:
        from cdc.sinks.sqlalchemy import make_engine

        engine = make_engine(cfg.target_url)
        if checkpoint.positions.name not in sa.inspect(engine).get_table_names():
            raise CDCError("never run: no checkpoints in the target yet")
        with engine.connect() as conn:
            pos = checkpoint.load_positions(conn, cfg.name).get("")
            out["position"] = str(pos) if pos else None
            out["dead_letters"] = checkpoint.dead_letter_count(conn, cfg.name)
            out["snapshot"] = {t: s[0] for t, s in checkpoint.snapshot_states(conn, cfg.name).items()}
            if cfg.transport.get("kind") == "kafka":
                from cdc.lease import lease_info

                out["lease"] = lease_info(conn, cfg.name)
        engine.dispose()
        if cfg.source_kind == "postgres":
            from cdc.sources.postgres import PostgresSource

            src = PostgresSource(cfg, [t.source for t in cfg.tables])
            try:
                out["slot"] = src.slot_info()
            finally:
                src.close()
            if out["slot"] is None and out.get("position"):
                out["warning"] = (f"replication slot {cfg.slot!r} is gone but the target holds a "
                                  f"position from it; recover: `strangler cdc drop {cfg.name}` then "
                                  f"`strangler cdc run {cfg.name}` (re-copies the tables)")
            elif out["slot"] and out["slot"].get("warning"):
                out["warning"] = out["slot"]["warning"]
    except Exception as exc:  # status must show what it can
        out["error"] = str(exc).strip().splitlines()[0]
    return out


def slot_warnings(streams: str | None = None) -> dict[str, str]:
    """Live WAL-health warnings per PostgreSQL stream in streams.yaml; {} if it cannot be read."""
    try:
        cfgs = list(config.load(streams).streams.values())
    except ConfigError:
        return {}
    out = {}
    for cfg in cfgs:
        if cfg.source_kind != "postgres":
            continue
        from cdc.sources.postgres import PostgresSource

        try:
            src = PostgresSource(cfg, [t.source for t in cfg.tables])
            try:
                info = src.slot_info()
            finally:
                src.close()
        except CDCError:
            continue  # unreachable source: `strangler cdc status` says why
        if info and info.get("warning"):
            out[cfg.name] = str(info["warning"])
    return out


def dual_writes(streams: str | None = None, *, shown: int = 10) -> dict[str, Any]:
    """Keys changed on both sides of an ownership group lately (cdc/dualwrite.py): the count,
    per group, and up to `shown` keys, newest first; what cannot be read is in "error"."""
    from cdc import dualwrite

    out: dict[str, Any] = {"count": 0, "groups": {}, "keys": [],
                           "window_s": dualwrite.RECENT_WINDOW_S}
    try:
        found = dualwrite.detect(config.load(streams))
    except (CDCError, ConfigError, ValueError) as exc:  # ownership errors are ValueErrors
        out["error"] = str(exc).strip().splitlines()[0]
        return out
    every = sorted((d for ds in found.values() for d in ds),
                   key=lambda d: -max(d.forward_ts_ms, d.reverse_ts_ms))
    out["count"] = len(every)
    out["groups"] = {g: len(ds) for g, ds in found.items()}
    out["keys"] = [d.as_dict() for d in every[:shown]]
    return out


def ownership_status(streams: str | None = None) -> dict[str, Any]:
    """Per group: the owner, a hold, each side's database guards (for `strangler status`).

    {} when no ownership is declared; what cannot be read is in "error".
    """
    from cdc.guard import guard_state

    try:
        sf = config.load(streams)
        if not Path(sf.ownership_path).exists():
            return {}
        doc = ownership.load(sf.ownership_path)
    except (CDCError, ownership.OwnershipError) as exc:
        return {"error": str(exc).strip().splitlines()[0]}
    groups: dict[str, Any] = {}
    for name, g in doc.groups.items():
        entry: dict[str, Any] = {"owner": g.owner, "held": g.held(), "guards": {}}
        for side, s in g.sides.items():
            try:
                entry["guards"][side] = guard_state(str(sf.stream(s.stream).source_url), g, side)
            except CDCError as exc:
                entry["guards"][side] = {"error": str(exc).strip().splitlines()[0]}
        groups[name] = entry
    return {"groups": groups}
