"""Run the seven steps of `migrations/` in order: explain → act → check → continue.

`prepare()` makes the workspace (`.strangler/walkthrough/`, wiped), its routes and
ownership files on free loopback ports, and the span receiver — or with `--real` starts
PostgreSQL (both databases, pgoutput CDC), Kafka where the machine can run it, and Zipkin
through `stack.realstack.RealServices`, whose databases and streams file the steps use; `run()` then takes each
step: says what it is and why (the step file), acts (or, interactively, lets the user act
and only checks), runs its checks, and stops at the first failed step. `Report` is the one
account of the run. Everything started is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from control.errors import USER_ERRORS, ControlError
from devstack import free_port
from migrations import Step, load_steps
from stack import state
from stack.model import Process, StackSettings, build_stack, require_parts
from stack.model import stream_process as cli_stream_process
from stack.realstack import RealServices, stop_postgres
from stack.supervisor import Supervisor
from walkthrough.checks import Result
from walkthrough.flow import demo_routes, traffic_totals, write_yaml
from walkthrough.ownflow import write_ownership
from walkthrough.spans import SpanReceiver, Spans, ZipkinSpans
from walkthrough.steps import ACTS, ALWAYS, CHECKS, REPO, STREAM_ENV, Plan, Walk

ENV_KEYS = STREAM_ENV

# What the interactive mode asks before each act: run it, do it yourself, skip the act and
# only check, or quit.
Ask = Callable[[Step], str]  # "auto" | "yourself" | "quit"


@dataclass
class StepReport:
    number: int
    title: str
    mode: str = "auto"
    seconds: float = 0.0
    checks: list[Result] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.number, "title": self.title, "mode": self.mode, "ok": self.ok,
                "seconds": round(self.seconds, 1), "checks": [c.to_json() for c in self.checks],
                "error": self.error}


@dataclass
class Report:
    steps: list[StepReport] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, int] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # stream → verified, divergent
    lag_peaks_ms: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    wanted: int = 7  # the steps this run was asked to reach
    problems: list[str] = field(default_factory=list)
    mode: str = "embedded"  # or real (--real)
    transport: str = "direct"  # the CDC streams': direct or kafka

    @property
    def ok(self) -> bool:
        return (len(self.steps) >= self.wanted and all(s.ok for s in self.steps) and self.failed == 0
                and not self.problems and all(r["divergent"] == 0 for r in self.rows.values()))

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "mode": self.mode, "transport": self.transport, "seconds": round(self.seconds, 1),
                "steps": [s.to_json() for s in self.steps],
                "requests": self.requests, "failed_requests": self.failed, "failures": self.failures[:20],
                "probe": self.probe, "split_over_time": self.timeline, "rows": self.rows,
                "cdc_lag_peak_ms": {k: round(v, 1) for k, v in self.lag_peaks_ms.items()},
                "canary": self.facts.get("canary"), "drill": self.facts.get("drill"),
                "shadow": {k: (self.facts.get("shadow") or {}).get(k)
                           for k in ("compared", "differing", "diff_rate", "net_diff_rate")},
                "ownership": self.facts.get("ownership"), "trace": self.facts.get("trace"),
                "problems": self.problems}


def home_dir() -> Path:
    return state.state_dir() / "walkthrough"


def reset() -> list[str]:
    """Stop whatever a previous walkthrough left running and wipe its workspace."""
    home = home_dir()
    stopped = Supervisor(run_dir=home / "run", log_dir=home / "logs").stop() if home.exists() else []
    traffic = home / "run" / "traffic.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(traffic.read_text())
        if b"traffic" in Path(f"/proc/{pid}/cmdline").read_bytes():  # not a reused pid
            os.killpg(pid, signal.SIGINT)
            stopped.append("traffic")
    if home.exists() and stop_postgres(home / "run"):  # a --real run's server its watchdog missed
        stopped.append("postgres")
    if home.exists():
        shutil.rmtree(home)
    return stopped


def child_env(home: Path, settings: StackSettings, services: RealServices | None = None) -> dict[str, str]:
    """What every process the walkthrough starts (and a user's shell, env.sh) sees: the
    workspace's SQLite databases, or with `services` (--real) its PostgreSQL databases and
    streams file."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update({"STRANGLER_STATE_DIR": str(home),
                "STRANGLER_ADMIN_TOKEN": settings.admin_token,
                "STRANGLER_OWNERSHIP": str(home / "ownership.yaml")})
    if services is None:
        env.update({"MONOLITH_DATABASE_URL": f"sqlite:///{home / 'monolith.sqlite3'}",
                    "MONOLITH_SQLITE_PATH": str(home / "monolith.sqlite3"),
                    "CATALOG_DATABASE_URL": f"sqlite:///{home / 'catalog.sqlite3'}"})
    else:
        env.update({"MONOLITH_DATABASE_URL": services.monolith_db, "CATALOG_DATABASE_URL": services.databases["catalog"],
                    "STRANGLER_STREAMS": str(services.streams or REPO / "streams.yaml")})
    return env


def stream_process(home: Path, settings: StackSettings, stream: str = "catalog") -> Process:
    """A CDC stream as a process of a workspace's stack (its databases through `child_env`)."""
    env = child_env(home, settings)
    return Process(name=cli_stream_process(stream), role="stream", cwd=str(REPO),
                   env={k: env[k] for k in ENV_KEYS if k in env},
                   argv=(sys.executable, "-m", "cli.main", "cdc", "run", stream))


def prepare(plan: Plan, say: Callable[[str], None]) -> Walk:
    require_parts("monolith", "router", "catalog", "cdc")
    reset()
    home = home_dir()
    home.mkdir(parents=True)
    (home / "logs").mkdir()
    (home / "run").mkdir()
    if not plan.real:
        return _prepare(plan, say, home, None)
    services = RealServices(run_dir=home / "run", progress=say)
    services.start(streams=REPO / "streams.yaml", detach=False, state=home, kafka="optional", zipkin=True)
    try:
        return _prepare(plan, say, home, services)
    except BaseException:
        services.stop()
        raise


def _prepare(plan: Plan, say: Callable[[str], None], home: Path, services: RealServices | None) -> Walk:
    ports = {"router": free_port(), "monolith": free_port(), "catalog": free_port()}
    routes = home / "routes.yaml"
    drill_port = free_port()
    write_yaml(routes, demo_routes(monolith_url=f"http://127.0.0.1:{ports['monolith']}",
                                   catalog_url=f"http://127.0.0.1:{ports['catalog']}",
                                   drill_url=f"http://127.0.0.1:{drill_port}"))
    write_ownership(home)
    settings = StackSettings(state=home, routes=routes, router_port=ports["router"],
                             monolith_port=ports["monolith"], service_ports={"catalog": ports["catalog"]},
                             admin_token=state.admin_token(create=True) or "walkthrough",
                             identity_secret=state.identity_secret(), seed=plan.seed,
                             monolith_database_url=services.monolith_db if services else None,
                             service_databases=services.databases if services else {},
                             streams=services.streams if services else None, fast_passwords=True)
    receiver: Spans = ZipkinSpans(services.zipkin) if services else SpanReceiver().start()
    stack = build_stack(settings, mode="real" if services else "embedded")
    # the catalog exports spans of requests the router traced (step 5); it decides at start
    traced = {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": receiver.endpoint,
              "OTEL_TRACES_SAMPLER_ARG": "0", "OTEL_BSP_SCHEDULE_DELAY": "500"}
    from dataclasses import replace

    stack = replace(stack, processes=tuple(replace(p, env={**p.env, **traced}) if p.name == "catalog" else p
                                           for p in stack.processes))
    walk = Walk(plan=plan, home=home, settings=settings, stack=stack,
                sup=Supervisor(run_dir=home / "run", log_dir=home / "logs"), env=child_env(home, settings, services),
                say=say, receiver=receiver, services=services)
    walk.facts["drill_port"] = drill_port
    # for a user who acts by hand: `source .strangler/walkthrough/env.sh` points the CLI here
    lines = [f"export {k}={walk.env[k]}" for k in (*ENV_KEYS, "STRANGLER_ADMIN_TOKEN") if k in walk.env]
    lines.append(f"export STRANGLER_ROUTER_URL={walk.router_url}")
    env_file = home / "env.sh"
    env_file.touch(mode=0o600)  # it holds the admin token, as .strangler/admin-token does
    env_file.write_text("\n".join(lines) + "\n")
    return walk


def run_step(walk: Walk, step: Step, decide: Callable[[], str] = lambda: "auto") -> StepReport:
    """The tool's own part (ALWAYS), then `decide()`: "auto" (the tool acts), "yourself" (the
    user acted, only check) or "quit" (the report then has mode quit and no checks)."""
    rep = StepReport(step.number, step.title)
    t0 = time.monotonic()
    try:
        if step.number in ALWAYS:  # e.g. step 2 starts the stack the walkthrough watches
            ALWAYS[step.number](walk, step)
        rep.mode = mode = decide()
        if mode == "quit":
            rep.error = f"stopped by the user at step {step.number}"
        elif mode == "auto" and ACTS[step.number] is not ALWAYS.get(step.number):
            ACTS[step.number](walk, step)
        if mode != "quit":
            rep.checks = CHECKS[step.number](walk, step)
    except USER_ERRORS as exc:
        rep.error = str(exc)
    except Exception as exc:  # a bug in a step must still end in the report, everything stopped
        rep.error = f"{type(exc).__name__}: {exc}"
    rep.seconds = time.monotonic() - t0
    return rep


def run(plan: Plan, *, only: int | None = None, ask: Ask | None = None,
        say: Callable[[str], None] = print, show: Callable[[str, Any], None] | None = None) -> Report:
    """All steps (or up to `only`, the earlier ones run automatically). `ask` decides per
    step (interactive); `show(kind, obj)` is told of each step ("explain", Step) and result
    ("checked", StepReport)."""
    steps = load_steps()
    if only is not None and not 1 <= only <= len(steps):
        raise ControlError(f"--step {only}: there are steps 1 to {len(steps)}")
    report = Report(wanted=only or len(steps), mode="real" if plan.real else "embedded")
    t0 = time.monotonic()
    walk = prepare(plan, say)
    report.transport = walk.transport  # before stop(): a stopped broker is no transport
    try:
        for step in steps[: only or len(steps)]:
            if show:
                show("explain", step)
            decide: Callable[[], str] = partial(str, "auto")
            if ask is not None and (only is None or step.number == only):
                decide = partial(ask, step)
            rep = run_step(walk, step, decide)
            report.steps.append(rep)
            if show:
                show("checked", rep)
            if not rep.ok:
                break
        else:
            try:
                drain(walk, report)
            except USER_ERRORS as exc:
                report.problems.append(f"the final drain failed: {exc}")
    except KeyboardInterrupt:
        report.problems.append("interrupted; everything the walkthrough started is stopped")
        raise
    finally:
        _finish(walk, report)
        report.seconds = time.monotonic() - t0
    return report


def drain(walk: Walk, report: Report) -> None:
    """After the last step: traffic stops, the running streams catch up, and `verify` counts
    the rows of each direction once more (the figures the report ends with)."""
    from walkthrough.steps import verify, wait_caught_up

    if walk.traffic is not None and walk.traffic.alive():
        walk.facts["traffic"] = walk.traffic.stop()
    for stream in ("catalog", "catalog_reverse"):
        if any(r.name == f"cdc-{stream.replace('_', '-')}" and r.alive for r in walk.sup.running()):
            wait_caught_up(walk, stream)
            differing, walk.facts[f"verify:{stream}"] = verify(walk, stream)
            if differing:
                report.problems.append(f"after the drain {differing} rows differ in {stream}")


def _finish(walk: Walk, report: Report) -> None:
    summary: dict[str, Any] = walk.facts.pop("traffic", {})
    if walk.traffic is not None and walk.traffic.alive():
        try:
            summary = walk.traffic.stop()
        except USER_ERRORS as exc:
            report.problems.append(str(exc))
    report.requests, report.failed, report.failures = traffic_totals(summary)
    for probe in walk.probes:
        report.probe["sent"] = report.probe.get("sent", 0) + probe.sent
        report.probe["failed"] = report.probe.get("failed", 0) + probe.failed
        report.requests += probe.sent
        report.failed += probe.failed
        report.failures += probe.failures
    for key, value in walk.facts.items():
        if key.startswith("verify:"):
            stream = key.split(":", 1)[1]
            tables = value.get("tables") or []
            report.rows[stream] = {
                "verified": sum(int(t.get("source_rows") or 0) for t in tables),
                "divergent": sum(len(t.get("missing") or []) + len(t.get("extra") or []) +
                                 len(t.get("different") or []) for t in tables)}
    report.facts = {k: v for k, v in walk.facts.items() if not k.startswith("verify:")}
    if walk.sampler is not None:
        walk.sampler.stop()
        report.timeline = walk.sampler.timeline()
    if walk.lag is not None:
        walk.lag.stop()
        report.lag_peaks_ms = dict(walk.lag.peaks)
    walk.stop()
