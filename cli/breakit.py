"""`strangler break [list] | NAME | check NAME | hint NAME | undo NAME`: faults to diagnose,
injected into the running stack (workshop/breakits.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import CLIError
from cli.output import out, print_json
from cli.workshop import engine_errors, show_result
from workshop import breakits

Name = Annotated[str, typer.Argument(metavar="NAME", help="A break-it (`strangler break list`).")]
StreamsOpt = Annotated[Path | None, typer.Option("--streams", envvar="STRANGLER_STREAMS", help="streams.yaml of the stack.")]
RoutesOpt = Annotated[Path | None, typer.Option("--routes", help="The routes file the router serves (default: the running stack's).")]
Real = Annotated[bool, typer.Option("--real", help="Allow the break-its that need the PostgreSQL stack (`up --real`).")]

app = typer.Typer(help="Break the running stack on purpose, then find and fix it.", no_args_is_help=True)


def _env(streams: Path | None, routes: Path | None) -> breakits.Env:
    return breakits.Env.from_environment(streams=streams, routes=routes)


@app.command("list")
@engine_errors
def list_(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The break-its, what a user would notice, and which are injected now."""
    now = breakits.records()
    rows = [{"name": b.name, "title": b.title, "symptom": b.symptom, "real_only": b.real_only,
             "injected": b.name in now} for b in breakits.BREAKITS.values()]
    if json_out:
        print_json({"breakits": rows})
        return
    for r in rows:
        flag = "[red]injected[/red] " if r["injected"] else ""
        real = " [dim](--real)[/dim]" if r["real_only"] else ""
        out.print(f"{r['name']:<16} {flag}{r['title']}{real}\n{'':<17}[dim]symptom: {r['symptom']}[/dim]", highlight=False)


@app.command("inject")
@engine_errors
def inject(name: Name, streams: StreamsOpt = None, routes: RoutesOpt = None, real: Real = False) -> None:
    """Inject NAME (also: `strangler break NAME`)."""
    b = breakits.get(name)
    if b.real_only and not real:
        raise CLIError(f"{name} needs the PostgreSQL stack: `strangler up --real`, then `strangler break {name} --real`")
    breakits.inject(b, _env(streams, routes))
    out.print(f"injected {name}: {b.title}.\nWhat a user notices: {b.symptom}\n"
              f"Find it and fix it; `strangler break check {name}` says when it is fixed, "
              f"`strangler break hint {name}` helps, `strangler break undo {name}` takes it back.", highlight=False)


@app.command()
@engine_errors
def check(name: Name, streams: StreamsOpt = None, routes: RoutesOpt = None,
          json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Is NAME fixed? (exit 0 yes, 3 not yet)."""
    b = breakits.get(name)
    result = b.check(_env(streams, routes))
    if result.passed:
        breakits.forget(name)
    show_result(result, ok=f"{name} is fixed", json_out=json_out, hint=f"strangler break hint {name}")


@app.command()
@engine_errors
def hint(name: Name, tier: Annotated[int, typer.Option("--tier", help="1 = a nudge; the last nearly gives the fix.")] = 1) -> None:
    """A hint for NAME."""
    b = breakits.get(name)
    if not 1 <= tier <= len(b.hints):
        error = CLIError(f"{name} has hints 1..{len(b.hints)}")
        error.exit_code = 2
        raise error
    out.print(f"hint {tier}/{len(b.hints)}: {b.hints[tier - 1]}", markup=False, highlight=False)


@app.command()
@engine_errors
def undo(name: Name, streams: StreamsOpt = None, routes: RoutesOpt = None) -> None:
    """Take NAME back out, as it was before `strangler break NAME`."""
    b = breakits.get(name)
    if breakits.undo(b, _env(streams, routes)):
        out.print(f"undid {name}", highlight=False)
    else:
        out.print(f"{name} is not injected (or already fixed); nothing to undo", highlight=False)


def _alias(name: str) -> None:
    def injected(streams: StreamsOpt = None, routes: RoutesOpt = None, real: Real = False) -> None:
        inject(name, streams, routes, real)

    injected.__doc__ = f"Inject {name}: {breakits.get(name).title}."
    app.command(name, hidden=True)(injected)


for _name in breakits.BREAKITS:  # `strangler break NAME` is `strangler break inject NAME`
    _alias(_name)
