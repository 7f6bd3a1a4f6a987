"""Where the CLI's words go: results on stdout, progress and errors on stderr.

`guarded` maps every error a user can act on (`control.errors.USER_ERRORS`: `ControlError`,
`cli.errors.CLIError` among them, and the engines' roots) to the
message on stderr and the exit code (1, or the error's own), so every command reports
failures the same way and never shows locals.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from control.errors import USER_ERRORS

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def duration_ms(ms: Any) -> str:
    """A lag or latency for people: 0.4 ms, 54 ms, 1.2 s, 14 s, 2.5 min ("-" when unknown)."""
    if ms is None:
        return "-"
    x = float(ms)
    if x < 10:
        return f"{x:.1f} ms"
    if x < 1000:
        return f"{x:.0f} ms"
    if x < 10_000:
        return f"{x / 1000:.1f} s"
    if x < 120_000:
        return f"{x / 1000:.0f} s"
    return f"{x / 60_000:.1f} min"


def progress(message: str) -> None:
    err.print(f"[dim]·[/dim] {message}", highlight=False)


def print_json(document: Any) -> None:
    """Exactly one JSON document on stdout."""
    typer.echo(json.dumps(document, indent=2, sort_keys=False, default=str, ensure_ascii=False))


def guarded(fn: F) -> F:
    """Turn a `ControlError` (or an engine's error) into `error: <message>` on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            err.print("[bold red]error:[/bold red] ", end="")
            err.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from None

    return wrapper  # type: ignore[return-value]
