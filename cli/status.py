"""`strangler status [--watch] [--json]`: what the migration looks like right now, printed.

The document is `control.status.collect`'s. Per route: weights, the observed split, error
rate and p50/p99 per backend, breaker state and the shadow diff rate; per CDC stream: lag,
dead letters, who writes each ownership group (and whether the other side's database
refuses), keys changed on both sides of an ownership group lately (dual writes) and, for
PostgreSQL streams in streams.yaml, a warning when the replication slot is close to (or
past) being invalidated by the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from cli.output import duration_ms, err, guarded, out, print_json
from control.errors import ControlError, RouterUnreachable
from control.routerapi import RouterAPI, find_router
from control.status import collect
from stack.model import part_present

app = typer.Typer()


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


def plane_lines(plane: dict[str, Any] | None) -> list[str]:
    """What nginx/HAProxy serves: the routes file on disk or not yet, and what it refused."""
    if not plane:
        return []
    name, serves = plane["name"], str(plane.get("serves") or "nothing yet")[:16]
    lines = [f"{name} serves routes file {serves} ({plane.get('how') or '?'})"
             + ("" if plane.get("current") else " · [yellow]not the file on disk yet[/yellow]")]
    if plane.get("refused"):
        lines.append(f"[bold red]REFUSED[/bold red] {plane['refused']}")
    return lines


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
    parts: list[Any] = [table, *reload_lines(summary.get("config")), *plane_lines(summary.get("plane"))]
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
        plane = None
        if part_present("dataplane"):  # a part a team may delete (stack/model.py PARTS)
            from control.planecontrol import running_plane

            plane = running_plane()
        if plane is None:
            raise RouterUnreachable("no router or data plane is running: start the stack with `strangler up` "
                                    "(or `strangler up --data-plane nginx|haproxy`), or give --router URL")
        name, routes, folder = plane
        from control.planestatus import collect_plane

        return _show(lambda prev: collect_plane(name, routes, folder, prev), json_out=json_out, watch=watch,
                     every=every, since=f"since {name} started (its access log {folder / 'access.jsonl'})", where=name)
    with RouterAPI(url) as api:
        _show(lambda prev: collect(api, prev), json_out=json_out, watch=watch, every=every,
              since=f"since the router started ({url})", where=url)


Collect = Callable[[dict[str, Any] | None], tuple[dict[str, Any], dict[str, Any]]]


def _show(step: Collect, *, json_out: bool, watch: bool, every: float, since: str, where: str) -> None:
    """One summary (`step(None)`) as JSON or a table, or redrawn live over each `every` seconds
    (`step(previous)`: the numbers between two moments)."""
    doc, summary = step(None)
    if json_out:
        print_json(summary)
        return
    if not watch:
        out.print(render(summary, title=since))
        return
    try:
        with Live(render(summary, title="since start"), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(every)
                try:
                    doc, summary = step(doc)
                    live.update(render(summary, title=f"last {every:g}s · {time.strftime('%H:%M:%S')} · {where}"))
                except ControlError as exc:
                    live.update(f"[red]{exc}[/red]")
    except KeyboardInterrupt:
        err.print("stopped watching")
