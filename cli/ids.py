"""`strangler ids show|reserve`: ids that never collide while two sides hold one table.

The blocks, and which database is a side's, are `handover.ids`'s: the monolith keeps
[1, 1e9), the extracted service in the next billion (README, "Ids that never collide").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.output import err, guarded, out, print_json
from handover.ids import allocators, block_of, chosen_group, chosen_side, reserve_side

app = typer.Typer(help="Id ranges of synced tables: which ids each side allocates, and why.",
                  no_args_is_help=True)


StreamsOpt = Annotated[Path, typer.Option("--streams", envvar="STRANGLER_STREAMS",
                                          help="streams.yaml: where each side's database is.")]
GroupOpt = Annotated[str | None, typer.Option("--group", help="Ownership group (ownership.yaml) whose tables to look at (default: its only group).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("show")
@guarded
def show(streams: StreamsOpt = Path("streams.yaml"), group: GroupOpt = None,
         json_out: JsonOpt = False) -> None:
    """Each side's id allocators: next id, largest id, and whether the next id is inside
    the side's block. Exit 3 when one is not: two sides inserting could then pick the same
    id, and CDC would turn one side's new row into an overwrite of the other's."""
    group = chosen_group(streams, group)
    sides, problems = allocators(streams, group)
    if json_out:
        print_json({"group": group, "sides": sides, "problems": problems, "ok": not problems})
    else:
        grid = Table("side", "table", "allocator", "next id", "largest id", "block", "ok")
        for entry in sides:
            blk = entry["block"]
            for t in entry["tables"]:
                grid.add_row(entry["side"] + (" (owner)" if entry["owner"] else ""), t["table"],
                              t["kind"], _n(t["next_id"]), _n(t["max_id"]),
                              f"[{blk[0]:_}, {blk[1]:_})" if blk else "-",
                              "yes" if t["in_block"] else "NO")
        out.print(grid)
        for p in problems:
            err.print(f"[yellow]·[/yellow] {p}", markup=True, highlight=False)
    if problems:
        raise typer.Exit(3)  # a check not met


@app.command("reserve")
@guarded
def reserve(
    side: Annotated[str | None, typer.Option("--side", help="Side (ownership.yaml) whose tables get the block (default: the group's side that is not the monolith).")] = None,
    start: Annotated[int | None, typer.Option(help="First id of the block (default: the shop's block for the side).")] = None,
    end: Annotated[int | None, typer.Option(help="End of the block, exclusive.")] = None,
    streams: StreamsOpt = Path("streams.yaml"),
    group: GroupOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Make SIDE's allocators hand out ids only from its block [start, end), so rows both
    sides create never share an id. Idempotent: run again, it resumes inside the block.
    Refused, changing nothing, if a table has rows at or above the block's end."""
    group = chosen_group(streams, group)
    side = chosen_side(streams, group, side)
    given = block_of(side, start, end) if start is not None or end is not None else None
    report = reserve_side(streams, group, side, given)
    if json_out:
        print_json(report)
        return
    lo, hi = report["block"]
    out.print(f"side {side}: ids in [{lo:_}, {hi:_})", highlight=False)
    for name, a in report["tables"].items():
        out.print(f"  {name}: next id {_n(a['next_id'])} ({a['kind']})", highlight=False)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:_}"
