"""`strangler own GROUP|TABLE --by SIDE --reason TEXT`: move write ownership, gated and resumable.

The procedure (preflight, hold, drain, guard, ids, reverse, flip, done; resumable, undone on
failure) is `handover.procedure`'s; this module parses the options and prints the outcome.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import err, guarded, out, print_json
from control.ledger import ledger_path
from handover.procedure import move

app = typer.Typer()


@app.command()
@guarded
def own(
    name: Annotated[str, typer.Argument(metavar="GROUP|TABLE", help="Ownership group (ownership.yaml), or one of its tables.")],
    by: Annotated[str, typer.Option("--by", help="The side that will write the group's tables (a router upstream name).")],
    reason: Annotated[str, typer.Option("--reason", help="Why: goes into the ledger.")] = "",
    undo_: Annotated[bool, typer.Option("--undo", help="Abandon an unfinished flip: guards back, hold released, the old owner keeps writing.")] = False,
    max_lag: Annotated[float, typer.Option(help="Refuse when the forward stream is further behind than this (seconds).")] = 5.0,
    hold_max: Annotated[float, typer.Option(help="Longest the group's writes are held (seconds); past it the flip is undone.")] = 30.0,
    streams: Annotated[str | None, typer.Option("--streams", envvar="STRANGLER_STREAMS", help="streams.yaml (it names ownership.yaml).")] = None,
    routes: Annotated[Path, typer.Option(help="Routes file whose ledger records the phases.")] = Path("routes.yaml"),
    router: Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL", help="Running router's base URL (default: the one `up` started).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Move write ownership of GROUP (or TABLE's group) to side --by, without losing a write.

    The procedure, each phase ledgered (`strangler ledger`):

    1 preflight: refuses, changing nothing, on an unknown group or side, a stream not declared or not running, lag over --max-lag, verify differences, the admin token missing, another `own` running.

    2 hold: the router answers the group's write methods 503 + Retry-After, at most --hold-max.

    3 drain: the forward stream applies everything up to now.

    4 guard: the old owner's database refuses application writes; the new owner's opens.

    5 ids: the new owner's id allocator moves into its block.

    6 reverse: the new owner's out-stream is capturing.

    7 flip: ownership.yaml says owner = SIDE, hold cleared.

    8 done: the hold time (hold to release) is reported.

    After a crash run the same command again: it resumes. --undo abandons an unfinished flip. Exit codes: 0 done (or nothing to do), 1 failed (and undone), 2 usage, 3 a check not met.
    """
    def say(line: str) -> None:
        err.print(f"· {line}", highlight=False, markup=False)

    group, result = move(name, by=by, reason=reason, undo_=undo_, streams=streams,
                         ledger=ledger_path(routes), router=router, max_lag=max_lag,
                         hold_max=hold_max, say=say)
    if json_out:
        print_json(result)
    elif result.get("outcome") == "nothing to undo":
        out.print(f"{group}: nothing to undo", highlight=False)
    elif result.get("outcome") == "nothing to do":
        guarded_tables = [t for side in result.get("guards", {}).values() for t, what in side.items()
                          if what != "open" and what != "removed"]
        out.print(f"{group}: already owned by {by}; nothing to do (database guards in place on "
                  f"{len(guarded_tables)} table(s) of the other side)", highlight=False)
    elif result.get("outcome") == "undone":
        out.print(f"{group}: flip to {by} undone; {result['from']} keeps writing", highlight=False)
    else:
        out.print(f"{group}: now written by {by} (was {result['from']}); writes held "
                  f"{result.get('hold_s')} s", highlight=False)
