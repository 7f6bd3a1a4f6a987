"""`strangler demo` (`make demo`): the catalog moves out of the monolith under traffic.

    1 workspace   `.strangler/demo/` wiped; routes with free loopback ports
    2 stack       monolith (migrated, seeded), catalog service, router
    3 traffic     `strangler traffic` through the router, running until the end
    4 cdc         the catalog stream: snapshot, then streaming into the service's database
    5 shadow      product reads mirrored to the catalog; diff rate reported
    6 canary      product reads stepped to 100% on the catalog with the gate
    7 own         catalog writes move to the service (`strangler own`): held, drained, flipped;
                  from then on they flow back to the monolith through the reverse stream
    8 drain       traffic stopped; both streams caught up; parity verified in both directions
    9 report      requests sent, failed requests, the split over time, rows that differ

Exit 0 only when failed requests and divergent rows are both zero (1 otherwise; 3 when
the canary rolled back). Everything started is stopped, also on Ctrl-C or failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.canary import RouterControl
from cli.demo_own import enforce, move_writes, prove_write, write_ownership
from cli.demoflow import (
    PRODUCTS,
    SplitSampler,
    Traffic,
    demo_routes,
    set_shadow,
    traffic_totals,
    write_yaml,
)
from cli.errors import CLIError, StackError
from cli.gate import Gate
from cli.output import err, guarded, out, print_json
from cli.rollout import CanaryPlan, run_canary
from cli.routerapi import RouterAPI, route_entry
from devstack import free_port
from stack import state
from stack.model import Process, StackSettings, build_stack, require_parts, stream_process
from stack.supervisor import Supervisor

REPO = Path(__file__).resolve().parent.parent
PHASES = 9


@dataclass(frozen=True, kw_only=True)
class DemoPlan:
    rate: float = 25.0
    shadow_seconds: float = 20.0
    steps: tuple[int, ...] = (10, 50, 100)
    interval: float = 20.0
    min_requests: int = 30
    settle_seconds: float = 10.0
    seed: str = "small"
    cdc_timeout: float = 120.0

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(rate=20.0, shadow_seconds=6.0, steps=(25, 100), interval=6.0, min_requests=15,
                   settle_seconds=3.0)


@dataclass
class Report:
    requests: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    shadow: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, Any] | None = None
    divergent_rows: int | None = None
    ownership: dict[str, Any] | None = None  # the flip: outcome, hold time, reverse stream
    reverse_parity: dict[str, Any] | None = None
    reverse_divergent_rows: int | None = None
    held_retried: int = 0  # writes answered 503 during the hold, retried by the generator
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.failed == 0 and self.divergent_rows == 0 and self.reverse_divergent_rows == 0
                and not self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "requests": self.requests, "failed_requests": self.failed,
                "failures": self.failures[:20], "shadow": self.shadow, "canary": self.canary,
                "split_over_time": self.timeline, "parity": self.parity,
                "divergent_rows": self.divergent_rows, "ownership": self.ownership,
                "reverse_parity": self.reverse_parity, "reverse_divergent_rows": self.reverse_divergent_rows,
                "held_retried": self.held_retried, "seconds": round(self.seconds, 1),
                "problems": self.problems}


class Phases:
    """`[n/8] title…` with a spinner on stderr, then `✓ title  detail (seconds)`."""

    def __init__(self) -> None:
        self.n = 0
        self._status: Any = None

    def begin(self, title: str) -> None:
        self.n += 1
        self.title, self.t0 = title, time.monotonic()
        self._status = err.status(f"[{self.n}/{PHASES}] {title}…")
        self._status.__enter__()

    def update(self, detail: str) -> None:
        if self._status is not None:
            self._status.update(f"[{self.n}/{PHASES}] {self.title}… {detail}")

    def done(self, detail: str = "") -> None:
        self._close()
        err.print(f"[green]✓[/green] [{self.n}/{PHASES}] {self.title}  {detail} "
                  f"[dim]({time.monotonic() - self.t0:.1f}s)[/dim]", highlight=False)

    def _close(self) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None

    def failed(self, why: str) -> None:
        self._close()
        err.print(f"[red]✗[/red] [{self.n}/{PHASES}] {self.title}: {why}", highlight=False, markup=True)


def child_env(home: Path, settings: StackSettings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "STRANGLER_STATE_DIR": str(home),
        "MONOLITH_DATABASE_URL": f"sqlite:///{home / 'monolith.sqlite3'}",
        "MONOLITH_SQLITE_PATH": str(home / "monolith.sqlite3"),
        "CATALOG_DATABASE_URL": f"sqlite:///{home / 'catalog.sqlite3'}",
        "STRANGLER_ADMIN_TOKEN": settings.admin_token,
        "STRANGLER_OWNERSHIP": str(home / "ownership.yaml"),
    })
    return env


def cdc_process(home: Path, settings: StackSettings, stream: str = "catalog") -> Process:
    env = child_env(home, settings)
    keep = ("STRANGLER_STATE_DIR", "MONOLITH_DATABASE_URL", "MONOLITH_SQLITE_PATH", "CATALOG_DATABASE_URL",
            "STRANGLER_OWNERSHIP")
    return Process(name=stream_process(stream), role="stream", cwd=str(REPO),
                   env={k: env[k] for k in keep},
                   argv=(sys.executable, "-m", "cli.main", "cdc", "run", stream))


def wait_caught_up(home: Path, stream: str, *, timeout: float, phases: Phases,
                   sup: Supervisor) -> dict[str, Any]:
    """Until the stream streams with its snapshot done and a small lag (its metrics file)."""
    path = home / "cdc" / f"{stream}.json"
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        dead = [r for r in sup.running() if r.name == stream_process(stream) and not r.alive]
        if dead:
            raise StackError(f"the CDC stream {stream} stopped; its log: {dead[0].log}")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = {}
        if doc.get("state") == "failed":
            raise StackError(f"the CDC stream {stream} failed: {doc.get('error')}")
        phases.update(f"{doc.get('state', 'starting')}, {doc.get('events', 0)} events, lag {doc.get('lag_ms', 0):.0f} ms")
        if doc.get("state") == "streaming" and float(doc.get("lag_ms") or 0) < 2000 \
                and time.time() - float(doc.get("updated") or 0) < 5:
            return doc
        time.sleep(0.5)
    raise StackError(f"the CDC stream {stream} did not catch up in {timeout:.0f}s (last state: "
                     f"{doc.get('state', 'unknown')}); see `{home}/logs/{stream_process(stream)}.log`")


def verify(home: Path, settings: StackSettings, stream: str = "catalog") -> tuple[int, dict[str, Any]]:
    """`strangler verify STREAM --json`: (differing rows, its document)."""
    proc = subprocess.run([sys.executable, "-m", "cli.main", "verify", stream, "--json"],
                          cwd=str(REPO), env=child_env(home, settings), capture_output=True,
                          text=True, timeout=300, check=False)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise StackError(f"`strangler verify {stream}` failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-500:]}") from None
    if proc.returncode not in (0, 3):
        raise StackError(f"`strangler verify {stream}` failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    differing = 0
    for key in ("missing", "extra", "different", "differing"):
        value = doc.get(key)
        differing += len(value) if isinstance(value, list) else int(value or 0)
    for table in doc.get("tables", []) if isinstance(doc.get("tables"), list) else []:
        for key in ("missing", "extra", "different"):
            value = table.get(key)
            differing += len(value) if isinstance(value, list) else int(value or 0)
    if proc.returncode == 3 and differing == 0:
        differing = 1  # verify says unequal even if we could not count the rows
    return differing, doc


def differing_fields(pairs: list[dict[str, Any]]) -> dict[str, int]:
    """How often each JSON path differed in the kept shadow pairs (most frequent first)."""
    counts: dict[str, int] = {}
    for pair in pairs:
        for path in pair.get("diffs") or []:
            counts[str(path)] = counts.get(str(path), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:10])


def run_demo(plan: DemoPlan, report: Report, phases: Phases) -> int:
    require_parts("monolith", "router", "catalog", "cdc")
    home = state.state_dir() / "demo"
    Supervisor(run_dir=home / "run", log_dir=home / "logs").stop()  # a demo killed last time
    phases.begin("workspace")
    if home.exists():
        import shutil

        shutil.rmtree(home)
    home.mkdir(parents=True)
    sup = Supervisor(run_dir=home / "run", log_dir=home / "logs")
    ports = {"router": free_port(), "monolith": free_port(), "catalog": free_port()}
    routes = home / "routes.yaml"
    write_yaml(routes, demo_routes(monolith_url=f"http://127.0.0.1:{ports['monolith']}",
                                   catalog_url=f"http://127.0.0.1:{ports['catalog']}"))
    write_ownership(home)
    settings = StackSettings(state=home, routes=routes, router_port=ports["router"],
                             monolith_port=ports["monolith"], catalog_port=ports["catalog"],
                             admin_token=state.admin_token(create=True) or "demo",
                             identity_secret=state.identity_secret(), seed=plan.seed)
    stack = build_stack(settings, mode="embedded")
    phases.done(str(home))
    traffic: Traffic | None = None
    sampler: SplitSampler | None = None
    try:
        phases.begin("stack: monolith (seeded), catalog service, router")
        sup.start(stack, progress=phases.update)
        phases.done(f"router at {stack.router_url}")
        api = RouterAPI(stack.router_url or "", token=settings.admin_token)

        phases.begin(f"traffic at {plan.rate:g} req/s through the router")
        traffic = Traffic(base_url=stack.router_url or "", rate=plan.rate, log=home / "logs" / "traffic.log",
                          env=child_env(home, settings))
        traffic.start()
        sampler = SplitSampler(api)
        sampler.start()
        phases.done("running until the end of the demo")

        phases.begin("CDC: snapshot the catalog tables, then stream into the service")
        sup.start_more(cdc_process(home, settings), progress=phases.update)
        doc = wait_caught_up(home, "catalog", timeout=plan.cdc_timeout, phases=phases, sup=sup)
        # the way back (no copy: the monolith has every row), ready for an ownership flip
        sup.start_more(cdc_process(home, settings, "catalog_reverse"), progress=phases.update)
        wait_caught_up(home, "catalog_reverse", timeout=plan.cdc_timeout, phases=phases, sup=sup)
        enforce(child_env(home, settings))  # the monolith owns: the catalog's copy refuses writes
        phases.done(f"{doc.get('events', 0)} events applied, lag {float(doc.get('lag_ms') or 0):.0f} ms")

        phases.begin("shadow: mirror product reads to the catalog and compare")
        set_shadow(routes, PRODUCTS, 100)
        time.sleep(plan.shadow_seconds)
        entry = route_entry(api.status(), PRODUCTS)
        set_shadow(routes, PRODUCTS, 0)
        shadow = entry.get("shadow") or {}
        report.shadow = {k: shadow.get(k) for k in
                         ("compared", "differing", "dropped", "diff_rate", "noise_rate", "net_diff_rate")}
        report.shadow["differing_fields"] = differing_fields(shadow.get("pairs") or [])
        phases.done(f"{report.shadow.get('compared') or 0} compared, diff rate "
                    f"{100 * float(report.shadow.get('diff_rate') or 0):.1f}% "
                    f"(net of noise {100 * float(report.shadow.get('net_diff_rate') or 0):.1f}%)")

        phases.begin("canary: product reads to the catalog, step by step")
        cplan = CanaryPlan(route=PRODUCTS, candidate="catalog", steps=plan.steps, interval=plan.interval,
                           # a laptop running the whole stack is noisy: latency gates only
                           # on a p99 beyond half a second and 3× the monolith's
                           gate=Gate(max_error_rate=0.01, max_p99_ratio=3.0, min_requests=plan.min_requests,
                                     p99_floor_ms=500.0),
                           max_wait=max(10 * plan.interval, 60.0), poll=1.0)
        result = run_canary(RouterControl(api, ledger=home / "ledger.jsonl"), cplan, say=phases.update)
        report.canary = result.to_json()
        if result.outcome != "promoted":
            phases.failed(result.why)
            report.problems.append(f"canary {result.outcome}: {result.why}")
        else:
            phases.done(f"catalog serves {result.weights.get('catalog')}% of product reads")
            time.sleep(plan.settle_seconds)

        phases.begin("own: catalog writes move to the service (strangler own catalog --by catalog)")
        flip = move_writes(home, child_env(home, settings), router_url=stack.router_url or "")
        report.ownership = {"outcome": flip["outcome"], "hold_s": flip.get("hold_s"),
                            "phases": flip.get("phases")}
        report.ownership["write_after_flip"] = prove_write(stack.router_url or "", home / "monolith.sqlite3")
        time.sleep(plan.settle_seconds)  # staff writes now land on the catalog and flow back
        report.ownership["reverse"] = wait_caught_up(home, "catalog_reverse", timeout=plan.cdc_timeout,
                                                     phases=phases, sup=sup)
        phases.done(f"writes held {1000 * float(flip.get('hold_s') or 0):.0f} ms; the catalog owns its "
                    f"tables; reverse lag {float(report.ownership['reverse'].get('lag_ms') or 0):.0f} ms")

        phases.begin("drain: stop traffic, let both streams catch up, verify both directions")
        summary = traffic.stop()
        traffic = None
        report.requests, report.failed, report.failures = traffic_totals(summary)
        report.held_retried = int(summary.get("held_retried") or 0)
        wait_caught_up(home, "catalog", timeout=plan.cdc_timeout, phases=phases, sup=sup)
        wait_caught_up(home, "catalog_reverse", timeout=plan.cdc_timeout, phases=phases, sup=sup)
        forward, report.parity = verify(home, settings)
        backward, report.reverse_parity = verify(home, settings, "catalog_reverse")
        report.divergent_rows, report.reverse_divergent_rows = forward, backward
        phases.done(f"{report.requests} requests, {report.failed} failed; rows differing: "
                    f"{forward} monolith → catalog, {backward} catalog → monolith")
    finally:
        if traffic is not None and traffic.alive():
            with contextlib.suppress(CLIError):
                traffic.stop(timeout=10)
        if sampler is not None:
            sampler.stop()
            report.timeline = sampler.timeline()
        sup.stop()
    return 0 if report.ok else (3 if report.canary and report.canary.get("outcome") == "rolled_back" else 1)


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def print_report(report: Report) -> None:
    out.print("\n[bold]Strangler demo: the catalog moved under traffic[/bold]")
    out.print(f"requests sent      {report.requests}")
    out.print(f"failed requests    {report.failed}")
    if report.shadow:
        out.print(f"shadow diff rate   {100 * float(report.shadow.get('diff_rate') or 0):.2f}% of "
                  f"{report.shadow.get('compared') or 0} compared"
                  + (f" (differing: {', '.join(report.shadow['differing_fields'])})"
                     if report.shadow.get("differing_fields") else ""), highlight=False)
    if report.canary:
        out.print(f"canary             {report.canary['outcome']}: {report.canary['why']}")
        for s in report.canary.get("steps", []):
            out.print(f"  {s['weight']:>3}%  {s['decision']:<8}  {s['candidate_requests']} requests, "
                      f"{s['candidate_errors']} errors, p99 {s['candidate_p99_ms']} ms vs "
                      f"{s['current_p99_ms']} ms  ({s['seconds']:.0f}s)", highlight=False)
    if report.ownership:
        rev = report.ownership.get("reverse") or {}
        out.print(f"write ownership    catalog → the service; writes held "
                  f"{1000 * float(report.ownership.get('hold_s') or 0):.0f} ms ({report.held_retried} "
                  f"retried after 503 + Retry-After); reverse-stream lag {float(rev.get('lag_ms') or 0):.0f} ms",
                  highlight=False)
        proof = report.ownership.get("write_after_flip") or {}
        if proof:
            out.print(f"  a price change after the flip: served by {proof['served_by']}, in the monolith "
                      f"after {proof['in_monolith_after_ms']} ms", highlight=False)
    out.print(f"catalog parity     {_count(report.divergent_rows)} rows differ monolith → catalog, "
              f"{_count(report.reverse_divergent_rows)} catalog → monolith", highlight=False)
    if report.timeline:
        table = Table(title="product reads: observed split over time", box=None, title_justify="left")
        for col in ("SECONDS", "REQUESTS", "MONOLITH", "CATALOG"):
            table.add_column(col, justify="right")
        for row in report.timeline:
            share = row["share"]
            table.add_row(f"{row['from_s']}–{row['to_s']}", str(row["requests"]),
                          f"{100 * share.get('monolith', 0):.0f}%", f"{100 * share.get('catalog', 0):.0f}%")
        out.print(table)
    for f in report.failures[:10]:
        out.print(f"  failed: {f}", highlight=False)
    for p in report.problems:
        out.print("[red]problem:[/red] ", end="")
        out.print(p.splitlines()[0] if p else p, markup=False, highlight=False)
    out.print("[green]0 failed, 0 divergent in both directions[/green]" if report.ok else
              "[red]the migration did not meet its promise (see above)[/red]")


@guarded
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="Shorter phases (about a minute): for CI.")] = False,
    rate: Annotated[float | None, typer.Option(help="Traffic in requests per second.")] = None,
    interval: Annotated[float | None, typer.Option(help="Seconds per canary step.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The final report as one JSON document.")] = False,
) -> None:
    """Migrate the catalog out of the monolith under continuous traffic, checking every step."""
    for name, value in (("--rate", rate), ("--interval", interval)):
        if value is not None and value <= 0:
            raise typer.BadParameter(f"{name} must be > 0", param_hint=name)
    plan = DemoPlan.quick() if quick else DemoPlan()
    if rate is not None or interval is not None:
        from dataclasses import replace

        plan = replace(plan, rate=rate or plan.rate, interval=interval or plan.interval)
    report = Report()
    phases = Phases()
    t0 = time.monotonic()
    try:
        code = run_demo(plan, report, phases)
    except KeyboardInterrupt:
        phases.failed("interrupted; everything the demo started is stopped")
        raise typer.Exit(130) from None
    except CLIError as exc:
        phases.failed(str(exc))
        report.problems.append(str(exc))
        code = 1
    report.seconds = time.monotonic() - t0
    phases.begin("report")
    phases.done(f"{report.seconds:.0f}s in all")
    if json_out:
        print_json(report.to_json())
    else:
        print_report(report)
    raise typer.Exit(code)


