"""`strangler map`: where the monolith's bounded contexts are and what tangles them (step 1).

A thin command over `contextmap.build_map`; Django runs in a child process, never in the CLI's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import contextmap
from cli.errors import CLIError
from cli.output import err, guarded, out, print_json
from contextmap import render

app = typer.Typer()
KIND_ORDER = ("cross-context-transaction", "shared-write", "foreign-write", "signal-send",
              "cross-context-signal", "cross-context-query", "import-cycle", "shared-module",
              "cross-context-foreign-key", "generic-foreign-key", "foreign-read")


class MapFailed(CLIError):
    """The map could not be made (the engine's message says what to fix)."""


def _tables(doc: dict[str, Any]) -> list[Table]:
    ctx = Table(title=f"contexts of {doc['project']} ({doc['observed_requests']} requests observed)")
    for col in ("context", "apps", "tables", "written by others"):
        ctx.add_column(col)
    foreign = Counter(w["owner"] for w in doc["foreign_writes"])
    for name, c in doc["contexts"].items():
        if c.get("external"):
            continue
        ctx.add_row(name, ", ".join(c["apps"]), str(len(c["tables"])), str(foreign.get(name, 0) or ""))
    coup = Table(title="coupling (highest first)")
    for col in ("contexts", "score", "made of"):
        coup.add_column(col)
    for e in doc["coupling"][:15]:
        coup.add_row(f"{e['a']} ↔ {e['b']}", f"{e['score']:g}",
                     ", ".join(f"{k} {v:g}" for k, v in e["parts"].items()))
    tang = Table(title="tangles found (strongest first)")
    tang.add_column("id", no_wrap=True)
    tang.add_column("kind", no_wrap=True)
    tang.add_column("where", no_wrap=True)
    tang.add_column("detail", overflow="fold")
    shown = Counter[str]()
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    for t in sorted(doc["tangles"], key=lambda t: (rank.get(t["kind"], 99), t["id"] is None)):
        shown[t["kind"]] += 1
        if t["id"] is None and shown[t["kind"]] > 3:
            continue  # the JSON has them all
        tang.add_row(t["id"] or "", t["kind"], t["where"] or "", t["detail"])
    hidden = sum(max(0, n - 3) for n in shown.values())
    if hidden:
        tang.caption = f"… and more of the same kinds (--json lists all {len(doc['tangles'])})"
    return [ctx, coup, tang]


@app.command("map")
@guarded
def map_command(
    settings: Annotated[str, typer.Option(help="The Django settings module, as in DJANGO_SETTINGS_MODULE.",
                                          envvar="DJANGO_SETTINGS_MODULE")] = "monolith.settings",
    observe: Annotated[Path | None, typer.Option(
        help="Request records written by contextmap.middleware.TableRecorderMiddleware while traffic ran.")] = None,
    exercise: Annotated[bool, typer.Option(
        "--exercise", help="GET every URL pattern on a throwaway test database: a quick map without traffic.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    mermaid: Annotated[Path | None, typer.Option(help="Write the Mermaid diagram here (else it is printed).")] = None,
    svg: Annotated[Path | None, typer.Option(help="Write an SVG here (needs Graphviz's dot).")] = None,
    contexts: Annotated[Path | None, typer.Option(
        help="YAML/JSON `contexts: {name: [app, ...]}` grouping apps into contexts (default one per app).")] = None,
) -> None:
    """Map the Django project's contexts: imports, foreign keys, tables written at run time, tangles."""
    if observe is not None and exercise:
        raise typer.BadParameter("give --observe FILE or --exercise, not both")
    try:
        doc = contextmap.build_map(settings, observe=observe, exercise=exercise, contexts=contexts)
    except contextmap.MapError as exc:
        raise MapFailed(str(exc)) from None
    diagram = render.mermaid(doc)
    notes = []
    if mermaid is not None:
        mermaid.write_text(diagram)
        notes.append(f"Mermaid diagram: {mermaid}")
    if svg is not None:
        note = render.svg(doc, svg)
        notes.append(note or f"SVG: {svg}")
    if observe is None and not exercise:
        notes.append("no run-time data: add --exercise for a quick map, or --observe FILE recorded by "
                     "contextmap.middleware.TableRecorderMiddleware under traffic (shared writes, "
                     "cross-context transactions)")
    if as_json:
        doc["mermaid"] = diagram
        print_json(doc)
    else:
        for table in _tables(doc):
            out.print(table)
        if mermaid is None:
            out.print("\n```mermaid\n" + diagram + "```", markup=False, highlight=False)
    for note in notes:
        err.print(note, markup=False, highlight=False)
