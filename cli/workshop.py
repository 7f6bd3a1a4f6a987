"""`strangler workshop list|start|check|hint|solution|reset`, and `strangler reset`: thin
commands over the workshop engine (workshop/)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from cli.errors import CLIError
from cli.output import guarded, out, print_json
from workshop import exercises, workspace
from workshop.errors import WorkshopError
from workshop.model import Result

app = typer.Typer(help="Workshop exercises: start one, check it, get hints, see the solution, reset.",
                  no_args_is_help=True)
reset_app = typer.Typer()

F = TypeVar("F", bound=Callable[..., Any])
Which = Annotated[str, typer.Argument(metavar="N", help="Exercise number (or its name).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


class CheckNotMet(CLIError):
    exit_code = 3


def engine_errors(fn: F) -> F:
    """A WorkshopError becomes a CLIError with the same exit code (then `guarded` prints it)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WorkshopError as exc:
            error = CLIError(str(exc))
            error.exit_code = exc.exit_code
            raise error from None

    return guarded(wrapper)  # type: ignore[return-value]


def show_result(result: Result, *, ok: str, json_out: bool, hint: str) -> None:
    """Print a check's outcome; exit 3 when it is not met."""
    if json_out:
        print_json(result.to_json())
    else:
        for p in result.problems:
            out.print(f"  ✗ {p}", markup=False, highlight=False)
        for n in result.notes if result.passed else ():
            out.print(f"  · {n}", markup=False, highlight=False)
        if result.passed:
            out.print(f"✓ {ok}", highlight=False)
    if not result.passed:
        raise CheckNotMet(f"{len(result.problems)} problem(s) left; `{hint}` helps")


@app.command("list")
@engine_errors
def list_(json_out: JsonOpt = False) -> None:
    """The exercises, the step of the migration each practises, and your progress."""
    done = workspace.progress()
    rows: list[dict[str, Any]] = []
    for ex in exercises.all_exercises():
        p = done.get(str(ex.number), {})
        state = "passed" if p.get("passed") else "started" if p.get("started") else "-"
        rows.append({"number": ex.number, "slug": ex.slug, "title": ex.title, "step": ex.step,
                     "state": state, "hints_seen": int(p.get("hints") or 0), "of_hints": len(ex.hints)})
    if json_out:
        print_json({"exercises": rows})
        return
    for r in rows:
        mark = {"passed": "✓", "started": "…", "-": " "}[str(r["state"])]
        out.print(f"{mark} {r['number']:>2}  {r['title']}  [dim]({r['step']}; hints {r['hints_seen']}/{r['of_hints']})[/dim]",
                  highlight=False)
    passed = sum(r["state"] == "passed" for r in rows)
    out.print(f"{passed} of {len(rows)} passed. Start one: strangler workshop start N", highlight=False)


@app.command()
@engine_errors
def start(which: Which, fresh: Annotated[bool, typer.Option(help="Start over (as `reset N`).")] = False) -> None:
    """Lay out exercise N under .strangler/workshop/N/ and say what to do."""
    ex = exercises.get(which)
    where = workspace.start(ex, fresh=fresh)
    out.print(f"[bold]{ex.number}. {ex.title}[/bold]  ({ex.step})\n")
    out.print(ex.goal.replace("{{workspace}}", str(where)) + "\n", highlight=False)
    out.print("[bold]Your task[/bold]\n" + ex.task.replace("{{workspace}}", str(where)) + "\n", highlight=False)
    out.print(f"Files to edit, in {where}:", highlight=False)
    for name in ex.files:
        out.print(f"  {where / name}", highlight=False)
    out.print(f"\nThen: strangler workshop check {ex.number}   (hints: strangler workshop hint {ex.number})",
              highlight=False)


@app.command()
@engine_errors
def check(which: Which, json_out: JsonOpt = False) -> None:
    """Check exercise N's state (exit 0 passed, 3 not yet): files, databases, the router's view."""
    ex = exercises.get(which)
    where = workspace.require(ex)
    result = exercises.run_check(ex, where)
    import time

    workspace.mark(ex, checked=time.time(), passed=result.passed)
    show_result(result, ok=f"exercise {ex.number} passed: {ex.title}", json_out=json_out,
                hint=f"strangler workshop hint {ex.number}")


@app.command()
@engine_errors
def hint(which: Which, tier: Annotated[int | None, typer.Option("--tier", help="Which hint (1 = a nudge; the last nearly gives the answer).")] = None) -> None:
    """The next hint for exercise N (or --tier K); each tier says more."""
    ex = exercises.get(which)
    seen = int(workspace.progress().get(str(ex.number), {}).get("hints") or 0)
    k = tier if tier is not None else min(seen + 1, len(ex.hints))
    if not 1 <= k <= len(ex.hints):
        error = CLIError(f"exercise {ex.number} has hints 1..{len(ex.hints)}; --tier {k} is not one")
        error.exit_code = 2
        raise error
    workspace.mark(ex, hints=k)
    text = ex.hints[k - 1].replace("{{workspace}}", str(workspace.folder(ex)))
    out.print(f"hint {k}/{len(ex.hints)}: {text}", markup=False, highlight=False)


@app.command()
@engine_errors
def solution(which: Which, apply: Annotated[bool, typer.Option("--apply", help="Put the solution into your workspace (your edits are replaced).")] = False) -> None:
    """Show exercise N's solution files (or --apply them, then `check`)."""
    from workshop import checks

    ex = exercises.get(which)
    workspace.mark(ex, solution_seen=True)
    if not apply:
        for name in ex.files:
            src = ex.solution_dir / name
            if src.exists():
                out.print(f"[bold]--- {name}[/bold]")
                out.print(src.read_text().replace("{{workspace}}", str(workspace.folder(ex))), markup=False, highlight=False)
        if ex.check in checks.SOLUTION_STEPS:
            out.print("The solution also changes the databases (what the command in the last hint does); "
                      f"`strangler workshop solution {ex.number} --apply` does it.", highlight=False)
        return
    workspace.require(ex)
    written = workspace.place(ex, ex.solution_dir)
    if step := checks.SOLUTION_STEPS.get(ex.check):
        step(workspace.folder(ex))
    out.print(f"applied the solution of exercise {ex.number} ({len(written)} files); "
              f"now: strangler workshop check {ex.number}", highlight=False)


@app.command()
@engine_errors
def reset(which: Which) -> None:
    """Put exercise N's files and databases back to its start."""
    ex = exercises.get(which)
    where = workspace.reset(ex)
    out.print(f"exercise {ex.number} is back at its start in {where}", highlight=False)


@reset_app.command("reset")
@engine_errors
def reset_everything(yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Remove the whole workshop workspace (.strangler/workshop: every exercise, progress, break-it records).

    Break-its still injected are undone first, so the stack is left as it was."""
    from workshop import breakits

    if not yes and not typer.confirm("Remove every exercise's work and the progress?"):
        raise typer.Exit(1)
    env = breakits.Env.from_environment()
    for name in breakits.records():
        try:
            breakits.undo(breakits.get(name), env)
            out.print(f"undid break-it {name}", highlight=False)
        except WorkshopError as exc:
            out.print(f"could not undo {name}: {exc}", markup=False, highlight=False)
    where = workspace.reset_all()
    out.print(f"removed {where}", highlight=False)
