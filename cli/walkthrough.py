"""`strangler walkthrough`: the seven migration steps of `migrations/`, run and checked under traffic.

    strangler walkthrough            interactive: each step explained, then you choose to let
                                     the tool act, act yourself (then it checks), or quit
    strangler walkthrough --auto     every step without asking (`make demo`)
    strangler walkthrough --step 4   steps 1-3 automatically, then step 4 (asked, unless --auto)
    strangler walkthrough --quick    shorter windows and canary steps (CI)
    strangler walkthrough --reset    stop what a previous run left and wipe .strangler/walkthrough/
    strangler walkthrough --real     on PostgreSQL (pgoutput CDC), Kafka where it can start, Zipkin
    strangler walkthrough --json     the final report as one JSON document on stdout

Exit 0 when every step's checks passed, no request failed and no row differs; 3 when a
check was not met; 1 on an error; 130 on Ctrl-C. The engine is `walkthrough/`.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import replace
from types import FrameType
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from cli.errors import CLIError
from cli.output import err, guarded, out, print_json
from migrations import MigrationError, Step
from walkthrough import engine
from walkthrough.engine import Report, StepReport
from walkthrough.flow import SERVICE
from walkthrough.steps import Plan


class Screen:
    """Progress on stderr: a step's explanation, a spinner while it runs, its checks."""

    def __init__(self, *, explain: bool) -> None:
        self.explain = explain
        self._status: Any = None
        self.current = ""

    def say(self, message: str) -> None:
        if self._status is not None:
            self._status.update(f"{self.current}… {message}")
        else:  # before the first step: what --real starts (PostgreSQL, Kafka, Zipkin), or could not
            err.print(message, markup=False, highlight=False)

    def show(self, kind: str, obj: Any) -> None:
        if kind == "explain":
            step: Step = obj
            self.current = f"[{step.number}/7] {step.title}"
            if self.explain:
                err.print(Panel(f"[bold]Goal[/bold] {step.goal}\n\n[bold]Why[/bold] {step.why}\n\n"
                                f"[bold]Changes[/bold] " + "; ".join(f"{k}: {v}" for k, v in step.changes.items())
                                + f"\n[bold]Undo[/bold] {step.undo}",
                                title=self.current, title_align="left"), highlight=False, soft_wrap=False)
            self._status = err.status(f"{self.current}…")
            self._status.__enter__()
        else:
            self.close()
            rep: StepReport = obj
            mark = "[green]✓[/green]" if rep.ok else "[red]✗[/red]"
            err.print(f"{mark} [{rep.number}/7] {rep.title} [dim]({rep.seconds:.1f}s)[/dim]", highlight=False)
            for c in rep.checks:
                err.print(f"    {'[green]✓[/green]' if c.ok else '[red]✗[/red]'} {c.name}: ", end="")
                err.print(c.detail, markup=False, highlight=False)
            if rep.error:
                err.print("    [red]error:[/red] ", end="")
                err.print(rep.error, markup=False, highlight=False)

    def close(self) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None


def ask(screen: Screen) -> Any:
    def choose(step: Step) -> str:
        screen.close()
        by_hand = step.act_yourself.replace(".strangler/walkthrough", str(engine.home_dir()))
        err.print(f"[bold]Act:[/bold] {escape(step.act_auto)}\n[bold]By hand:[/bold] {escape(by_hand)}", highlight=False,
                  markup=True)
        answer = typer.prompt("[r]un it / do it [y]ourself, then check / [q]uit", default="r", err=True)
        while answer.strip().lower()[:1] not in ("r", "y", "q"):
            answer = typer.prompt("answer r, y or q", default="r", err=True)
        choice = {"r": "auto", "y": "yourself", "q": "quit"}[answer.strip().lower()[:1]]
        if choice == "yourself" and step.number != 2:  # step 2 is the stack itself: always the tool's
            home = engine.home_dir()
            err.print(f"In another terminal: `source {home / 'env.sh'}` (the walkthrough's databases and "
                      f"router), then: {by_hand}", highlight=False, markup=False)
            typer.prompt("Press Enter when done (the walkthrough checks it)", default="", show_default=False,
                         err=True)
        screen._status = err.status(f"{screen.current}…")
        screen._status.__enter__()
        return choice

    return choose


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def print_report(report: Report) -> None:
    out.print(f"\n[bold]Strangler walkthrough: the {SERVICE} leaves the monolith[/bold]")
    table = Table(box=None)
    for col in ("STEP", "RESULT", "SECONDS", "CHECKS"):
        table.add_column(col)
    for s in report.steps:
        table.add_row(f"{s.number} {s.title}", "ok" if s.ok else "FAILED", f"{s.seconds:.1f}",
                      ", ".join(f"{c.name} {'✓' if c.ok else '✗'}" for c in s.checks) or (s.error or "")[:80])
    out.print(table)
    out.print(f"mode               {report.mode}, CDC transport {report.transport}", highlight=False)
    out.print(f"requests sent      {report.requests} ({report.probe.get('sent', 0)} of them the probe's)")
    out.print(f"failed requests    {report.failed}")
    for stream, rows in report.rows.items():
        out.print(f"rows {stream + ' ':<14}{rows['verified']} verified, {rows['divergent']} divergent", highlight=False)
    trace = report.facts.get("trace") or {}
    if trace:
        out.print(f"trace              {trace.get('trace_id') if trace.get('found') else 'none'} found in "
                  f"{trace.get('store')}", highlight=False)
    if report.lag_peaks_ms:
        out.print("CDC lag peaks      " + ", ".join(f"{k} {v:.0f} ms" for k, v in report.lag_peaks_ms.items()),
                  highlight=False)
    if report.timeline:
        split = Table(title="product reads: observed split over time", box=None, title_justify="left")
        for col in ("SECONDS", "REQUESTS", "MONOLITH", SERVICE.upper()):
            split.add_column(col, justify="right")
        for row in report.timeline:
            share = row["share"]
            split.add_row(f"{row['from_s']}–{row['to_s']}", str(row["requests"]),
                          f"{100 * share.get('monolith', 0):.0f}%", f"{100 * share.get(SERVICE, 0):.0f}%")
        out.print(split)
    for f in report.failures[:10]:
        out.print(f"  failed: {f}", highlight=False, markup=False)
    for p in report.problems:
        out.print("[red]problem:[/red] ", end="")
        out.print(p, markup=False, highlight=False)
    out.print(f"[green]all {len(report.steps)} steps checked, 0 failed requests, 0 divergent rows[/green]"
              if report.ok else "[red]the migration did not meet its promise (see above)[/red]")


@guarded
def walkthrough(
    auto: Annotated[bool, typer.Option("--auto", help="Run every step without asking.")] = False,
    step: Annotated[int | None, typer.Option("--step", min=1, max=7,
                                             help="Stop after step N (earlier steps run by themselves).")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Stop a previous run's processes, wipe its workspace, exit.")] = False,
    real: Annotated[bool, typer.Option("--real", help="Throwaway PostgreSQL (both databases, pgoutput CDC), Kafka as the CDC transport where it can start (else direct), and Zipkin for the traces, instead of the embedded stack.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Short windows and canary steps (CI's form).")] = False,
    rate: Annotated[float | None, typer.Option(help="Traffic in requests per second.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The final report as one JSON document.")] = False,
) -> None:
    """Walk the seven migration steps of migrations/ under traffic: explain, act, check each."""
    if rate is not None and rate <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--rate")
    if reset:
        stopped = engine.reset()
        err.print(f"walkthrough reset: {engine.home_dir()} wiped" + (f", stopped {', '.join(stopped)}" if stopped else ""))
        return
    interactive = not auto
    if interactive and not sys.stdin.isatty():
        raise CLIError("the walkthrough asks before each step but stdin is not a terminal; add --auto")
    plan = Plan.quick(real=real) if quick else Plan(real=real)
    if rate is not None:
        plan = replace(plan, rate=rate)
    screen = Screen(explain=interactive or not json_out)
    # Ctrl-C and SIGTERM both stop everything it started, also when started with SIGINT
    # ignored (a background job of a script)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = engine.run(plan, only=step, ask=ask(screen) if interactive else None, say=screen.say,
                            show=screen.show)
    except MigrationError as exc:
        raise CLIError(f"a step file is wrong: {exc}") from None
    except KeyboardInterrupt:
        screen.close()
        err.print("[red]✗[/red] interrupted; everything the walkthrough started is stopped")
        raise typer.Exit(130) from None
    finally:
        screen.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if json_out:
        print_json(report.to_json())
    else:
        print_report(report)
    raise typer.Exit(0 if report.ok else 3)
