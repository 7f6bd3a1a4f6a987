"""`strangler demo` (`make demo`): the same as `strangler walkthrough --auto` (cli/walkthrough.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.walkthrough import walkthrough


def demo(
    quick: Annotated[bool, typer.Option("--quick", help="Short windows and canary steps (CI's form).")] = False,
    rate: Annotated[float | None, typer.Option(help="Traffic in requests per second.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The final report as one JSON document.")] = False,
) -> None:
    """The seven migration steps under traffic, without asking: `strangler walkthrough --auto`."""
    walkthrough(auto=True, step=None, reset=False, real=False, quick=quick, rate=rate, json_out=json_out)
