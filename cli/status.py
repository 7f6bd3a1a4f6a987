"""`strangler status [--watch] [--json]`: what the migration looks like right now.

It reads the router's `/_strangler/overview` — `router.overview.overview()`, the same
document the dashboard (`/_strangler/ui`) streams — and adds what only the CLI can check.

Per route: weights, the observed split, error rate and p50/p99 per backend, breaker state
and the shadow diff rate, from the router's cumulative status; per CDC stream: lag, dead
letters, who writes each ownership group (and whether the other side's database refuses),
keys changed on both sides of an ownership group lately (dual writes) and, for PostgreSQL streams in streams.yaml, a warning when the replication slot is
close to (or past) being invalidated by the server. `summarize` is pure (status document in, summary out) so it is tested
without a router; with a previous document the numbers cover only the time between the
two (what `--watch` shows), otherwise everything since the router started.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from cli.errors import CLIError, RouterUnreachable
from cli.output import duration_ms, err, guarded, out, print_json
from cli.routerapi import RouterAPI, backend_stats, find_router, route_entries, snapshots
from rollout.gate import Snapshot, window
from stack import state

app = typer.Typer()


def _breaker(entry: dict[str, Any], backend: str, stats: dict[str, Any],
             doc_breakers: Any = None) -> str | None:
    if "breaker" in stats:
        b = stats["breaker"]
        return str(b.get("state") if isinstance(b, dict) else b)
    breakers = entry.get("breakers") or doc_breakers
    if isinstance(breakers, dict) and backend in breakers:
        b = breakers[backend]
        return str(b.get("state") if isinstance(b, dict) else b)
    return None


def _shadow(entry: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any] | None:
    shadow = entry.get("shadow")
    if not isinstance(shadow, dict):
        return None
    keys = ("compared", "differing", "dropped")
    now = {k: int(shadow.get(k, 0) or 0) for k in keys}
    if prev and isinstance(prev.get("shadow"), dict) and int(prev["shadow"].get("compared", 0) or 0) <= now["compared"]:
        now = {k: now[k] - int(prev["shadow"].get(k, 0) or 0) for k in keys}
    doc: dict[str, Any] = {**now, "diff_rate": now["differing"] / now["compared"] if now["compared"] else 0.0}
    for extra in ("to", "noise", "noise_rate", "net_diff_rate", "diff_rate_net"):
        if extra in shadow:
            doc[extra] = shadow[extra]
    return doc


def summarize(doc: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON-able summary of a router status document (optionally since `previous`)."""
    routes = []
    prev_entries = route_entries(previous) if previous else {}
    for name, entry in route_entries(doc).items():
        weights, snaps = snapshots(doc, name)
        before: dict[str, Snapshot] = snapshots(previous, name)[1] if name in prev_entries and previous else {}
        stats = backend_stats(entry)
        wins = {b: window(before.get(b), s) for b, s in snaps.items()}
        total = sum(w.requests for w in wins.values())
        backends = {}
        for b, w in wins.items():
            backends[b] = {
                "weight": weights.get(b, 0),
                "requests": w.requests,
                "share": w.requests / total if total else 0.0,
                "errors": w.errors,
                "error_rate": w.error_rate,
                "p50_ms": w.p50 if w.buckets else stats.get(b, {}).get("p50_ms"),
                "p99_ms": w.p99 if w.buckets else stats.get(b, {}).get("p99_ms"),
                "breaker": _breaker(entry, b, stats.get(b, {}), doc.get("breakers")),
            }
        limited = int(entry.get("rate_limited") or 0)  # 429s (over the window, if one)
        if name in prev_entries:
            limited = max(0, limited - int(prev_entries[name].get("rate_limited") or 0))
        routes.append({"route": name, "weights": weights, "requests": total, "backends": backends,
                       "shadow": _shadow(entry, prev_entries.get(name)), "rate_limited": limited})
    config: dict[str, Any] = doc["config"] if isinstance(doc.get("config"), dict) else {}
    return {"routes": routes, "config": {"source": config.get("source"),
                                         "last_reload": config.get("last_reload")}}


def reload_lines(config: dict[str, Any] | None) -> list[str]:
    """A refused reload: the router serves its previous table, not the file on disk."""
    last = (config or {}).get("last_reload")
    if not isinstance(last, dict) or last.get("ok", True):
        return []
    at = time.strftime("%H:%M:%S", time.localtime(last["at"])) if last.get("at") else "?"
    source = config.get("source") if config else None
    return [f"[bold red]RELOAD REFUSED[/bold red] at {at} ({last.get('source') or 'reload'}): "
            f"{last.get('error')}",
            f"  the router still serves its previous table, not {source or 'the routes file'} on "
            "disk; fix the file (`strangler routes validate`) and it reloads by itself"]


def stream_status(folder: Path | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Per CDC stream lag and dead letters, from the files running streams write about once a
    second (`.strangler/cdc/<stream>.json`, see cdc/metrics.py): the router's reader, which
    the dashboard and `/_strangler/overview` use too."""
    from router.overview import stream_status as read

    return read(folder or state.state_dir() / "cdc")


def with_slot_warnings(streams: list[dict[str, Any]], warnings: dict[str, str]) -> list[dict[str, Any]]:
    """Attach live slot warnings; a stopped stream's slot is the one most at risk, so a warned
    stream without a metrics file is listed too."""
    by_name = {str(s.get("stream")): s for s in streams}
    for name, warning in warnings.items():
        row = by_name.get(name)
        if row is None:
            row = {"stream": name, "state": "not running"}
            streams.append(row)
        row["warning"] = warning
    return streams


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _ms(x: Any) -> str:
    return duration_ms(x)


def render(summary: dict[str, Any], *, title: str) -> Group:
    table = Table(title=title, box=None, pad_edge=False, title_justify="left")
    for col in ("ROUTE", "BACKEND", "WEIGHT", "SPLIT", "REQUESTS", "ERRORS", "P50", "P99", "BREAKER", "SHADOW DIFF", "429"):
        table.add_column(col)
    for r in summary["routes"]:
        shadow = r.get("shadow")
        shadow_text = "-" if not shadow else f"{_pct(shadow['diff_rate'])} of {shadow['compared']}" + (
            f" ({shadow['dropped']} dropped)" if shadow.get("dropped") else "")
        for i, (b, s) in enumerate(r["backends"].items()):
            err_text = f"{_pct(s['error_rate'])} ({s['errors']})" if s["requests"] else "-"
            table.add_row(r["route"] if i == 0 else "", b, f"{s['weight']}%", _pct(s["share"]),
                          str(s["requests"]), err_text, _ms(s["p50_ms"]), _ms(s["p99_ms"]),
                          s["breaker"] or "-", shadow_text if i == 0 else "",
                          str(r.get("rate_limited", 0)) if i == 0 else "")
    parts: list[Any] = [table, *reload_lines(summary.get("config"))]
    streams = summary.get("streams") or []
    if streams:
        st = Table(title="CDC streams", box=None, pad_edge=False, title_justify="left")
        for col in ("STREAM", "STATE", "LAG", "DEAD LETTERS"):
            st.add_column(col)
        for s in streams:
            st.add_row(str(s.get("stream") or s.get("name")), str(s.get("state", "-")),
                       _ms(s.get("lag_ms")), str(s.get("dead_letters", "-")))
        parts.append(st)
        for s in streams:
            if s.get("warning"):
                parts.append(f"[bold red]WARNING[/bold red] {s.get('stream')}: {s['warning']}")
    parts += rollout_lines(summary.get("rollouts"))
    parts += ownership_lines(summary.get("ownership"))
    parts += dual_write_lines(summary.get("dual_writes"))
    if summary.get("note"):
        parts.append(f"[dim]{summary['note']}[/dim]")
    return Group(*parts)


def rollout_lines(rollouts: list[dict[str, Any]] | None) -> list[str]:
    """The canary of each route as the dashboard shows it: state, step, the gate's last word."""
    lines = []
    for r in rollouts or []:
        verdict = r.get("verdict") or {}
        why = verdict.get("why") or r.get("why") or ""
        lines.append(f"rollout {r.get('route')} → {r.get('candidate')}: {str(r.get('state', '?')).replace('_', ' ')}, "
                     f"step {r.get('step', 0)}/{len(r.get('steps') or [])} at {r.get('weight')}%"
                     + (f" · gate: {verdict.get('decision')}" if verdict else "") + (f" ({why})" if why else ""))
    return lines


def ownership_lines(own: dict[str, Any] | None) -> list[str]:
    """Who writes each ownership group now, and whether the other side's database refuses."""
    if not own:
        return []
    if own.get("error"):
        return [f"[yellow]ownership: not read ({own['error']})[/yellow]"]
    lines = []
    for name, g in own.get("groups", {}).items():
        parts = []
        for side, tables in g["guards"].items():
            if "error" in tables:
                parts.append(f"{side}: {tables['error']}")
                continue
            guarded = [t for t, what in tables.items() if what != "open"]
            if side == g["owner"]:
                parts.append(f"{side} open" if not guarded else f"[red]{side} (the owner) guarded on "
                             f"{', '.join(guarded)}[/red]")
            else:
                parts.append(f"{side} guarded" if len(guarded) == len(tables) else
                             f"[red]{side} NOT guarded on {', '.join(t for t in tables if t not in guarded)}"
                             f" (run `strangler own {name} --by {g['owner']} --reason ...`)[/red]")
        hold = " · [yellow]writes held (a flip is running)[/yellow]" if g.get("held") else ""
        lines.append(f"ownership {name}: written by {g['owner']}{hold} · database guards: {'; '.join(parts)}")
    return lines


def dual_write_lines(dw: dict[str, Any] | None) -> list[str]:
    """What `status` prints about keys changed on both sides of an ownership group."""
    if not dw:
        return []
    if dw.get("error"):
        return [f"[yellow]dual writes: not checked ({dw['error']})[/yellow]"]
    if not dw.get("count"):
        return []
    lines = [f"[bold red]DUAL WRITES[/bold red] {dw['count']} key(s) changed on both sides within "
             f"{dw.get('window_s', 60):g}s (two writers for one row: check the routes' write owner "
             "and the write guards):"]
    for k in dw.get("keys", []):
        lines.append(f"  {k['group']}: {k['table']} {json.dumps(k['key'], sort_keys=True)} "
                     f"forward {time.strftime('%H:%M:%S', time.localtime(k['forward_ts_ms'] / 1000))}, "
                     f"reverse {time.strftime('%H:%M:%S', time.localtime(k['reverse_ts_ms'] / 1000))}")
    if dw["count"] > len(dw.get("keys", [])):
        lines.append(f"  ... and {dw['count'] - len(dw['keys'])} more (`strangler status --json`)")
    return lines


def collect(api: RouterAPI, previous: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The router's overview (router/overview.py: the document the dashboard streams) as the
    status table shows it, plus what only the CLI checks: slot warnings, dual writes and the
    databases' write guards (they need the databases' DSNs)."""
    view = api.overview()
    doc = view["status"]
    summary = summarize(doc, previous)
    summary["router"] = api.base_url
    summary["rollouts"] = view.get("rollouts", [])
    from cli.cdc import dual_writes, slot_warnings  # lazily: it loads the CDC engine

    streams, note = view.get("streams", []), view.get("streams_note")
    summary["streams"] = with_slot_warnings(streams, slot_warnings())
    summary["dual_writes"] = dual_writes()
    from cli.own import ownership_status

    summary["ownership"] = ownership_status()
    if note and not summary["streams"]:
        summary["note"] = note
    return doc, summary


@app.command()
@guarded
def status(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Redraw live until Ctrl-C (numbers over the last refresh).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    every: Annotated[float, typer.Option("--every", min=0.2, help="Seconds between redraws with --watch.")] = 2.0,
    router: Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL", help="Running router's base URL.")] = None,
) -> None:
    """Weights, observed split, errors, latency, breakers and shadow diffs per route; CDC lag."""
    if watch and json_out:
        raise typer.BadParameter("--watch redraws a table; --json prints one document: choose one")
    url = find_router(router)
    if url is None:
        raise RouterUnreachable("no router is running: start the stack with `strangler up` or give --router URL")
    with RouterAPI(url) as api:
        doc, summary = collect(api, None)
        if json_out:
            print_json(summary)
            return
        if not watch:
            out.print(render(summary, title=f"since the router started ({url})"))
            return
        try:
            with Live(render(summary, title="since start"), console=out, refresh_per_second=4) as live:
                while True:
                    time.sleep(every)
                    try:
                        doc, summary = collect(api, doc)
                        live.update(render(summary, title=f"last {every:g}s · {time.strftime('%H:%M:%S')} · {url}"))
                    except CLIError as exc:
                        live.update(f"[red]{exc}[/red]")
        except KeyboardInterrupt:
            err.print("stopped watching")
