"""`strangler routes show | validate [FILE] | diff`: the routing table, checked by the router.

Everything here parses routes.yaml with the router's own loader (`router.config`), so
the CLI never accepts a file the router would refuse. With a router running, `show`
adds the live weights (and shows the router's table alone when the file does not load:
the router keeps serving the last good one) and `diff` compares the file with what the
router serves;
without one, `diff` compares the file with its last committed version (git HEAD).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from cli.errors import CLIError
from cli.output import err, guarded, out, print_json
from control.routerapi import RouterAPI, find_router, route_entries, weights
from stack.model import require_parts

T = TypeVar("T")

if TYPE_CHECKING:
    from router.config import Config

app = typer.Typer(help="Show, validate and diff the routing table (routes.yaml).", no_args_is_help=True)

RoutesFile = Annotated[Path, typer.Option("--routes", help="The routes file.")]
RouterURL = Annotated[str | None, typer.Option("--router", envvar="STRANGLER_ROUTER_URL", help="Running router's base URL.")]


def load(path: Path, text: str | None = None) -> Config:
    """Parse with the router's loader; a `ConfigError` becomes a CLI error (exit 3 in validate)."""
    require_parts("router")
    from router.config import parse_config

    if text is None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise CLIError(f"cannot read {path}: {exc.strerror}; give the file with --routes") from exc
    return parse_config(text, source=str(path), base_dir=path.absolute().parent)


def route_doc(config: Config) -> list[dict[str, Any]]:
    docs = []
    for r in config.routes:
        m = r.match
        docs.append({
            "name": r.name,
            "match": {"prefix": m.prefix, "exact": m.exact,
                      "methods": sorted(m.methods) if m.methods else None, "host": m.host},
            "weights": r.weights,
            "fallback": r.fallback,
            "shadow": {"to": r.shadow.to, "percent": r.shadow.percent} if r.shadow else None,
            "identity": r.identity,
        })
    return docs


def _ask_live(router: str | None, read: Callable[[RouterAPI], T]) -> tuple[str, T] | None:
    """`read` from the running router's admin API, with its URL; None if no router answers."""
    url = find_router(router)
    if url is None:
        return None
    with RouterAPI(url) as api:
        if not api.alive():
            return None
        return url, read(api)


def live_weights(router: str | None) -> dict[str, dict[str, int]] | None:
    got = _ask_live(router, lambda api: route_entries(api.status()))
    return None if got is None else {name: weights(entry) for name, entry in got[1].items()}


def live_table(router: str | None) -> tuple[str, dict[str, Any]] | None:
    """The running router's URL and the table it serves (`/_strangler/routes`), if one answers."""
    return _ask_live(router, RouterAPI.routes)


def live_route_doc(table: dict[str, Any]) -> list[dict[str, Any]]:
    """`route_doc`'s shape from the router's own table (weights and live weights are the same)."""
    docs = []
    for r in table.get("routes", []):
        shadow = r.get("shadow")
        docs.append({
            "name": r["name"],
            "match": {"prefix": r.get("prefix"), "exact": r.get("exact"),
                      "methods": sorted(r["methods"]) if r.get("methods") else None, "host": r.get("host")},
            "weights": dict(r.get("weights") or {}),
            "fallback": r.get("fallback"),
            "shadow": {"to": shadow["to"], "percent": shadow["percent"]} if shadow else None,
            "identity": r.get("identity", False),
            "live_weights": dict(r.get("weights") or {}),
        })
    return docs


@app.command()
@guarded
def show(
    routes: RoutesFile = Path("routes.yaml"),
    router: RouterURL = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """The routing table: match, backends and weights (live ones when a router runs)."""
    try:
        config = _load_or_fail(routes)
    except CLIError as exc:
        served = live_table(router)
        if served is None:
            raise
        # The router refused this file (or never saw it) and serves its last good table.
        url, table = served
        docs = live_route_doc(table)
        err.print(f"[yellow]{routes} does not load:[/yellow] {exc}", highlight=False)
        err.print(f"[yellow]showing the table the router at {url} serves instead (its last good "
                  f"one); fix the file, then `strangler routes validate {routes}`[/yellow]", highlight=False)
        upstreams = {str(n): str(u.get("url") if isinstance(u, dict) else u)
                     for n, u in (table.get("upstreams") or {}).items()}
        _print_table(docs, upstreams, routes, json_out, file_error=str(exc), live=True)
        return
    docs = route_doc(config)
    live = live_weights(router)
    if live is not None:
        for d in docs:
            d["live_weights"] = live.get(d["name"])
    _print_table(docs, {n: u.url for n, u in config.upstreams.items()}, routes, json_out,
                 file_error=None, live=live is not None)


def _print_table(docs: list[dict[str, Any]], upstreams: dict[str, str], routes: Path, json_out: bool,
                 *, file_error: str | None, live: bool) -> None:
    if json_out:
        doc: dict[str, Any] = {"file": str(routes), "upstreams": upstreams, "routes": docs}
        if file_error is not None:
            doc.update({"file_error": file_error, "from": "router"})
        print_json(doc)
        return
    table = Table(box=None, pad_edge=False)
    file_col = "BACKENDS (router)" if file_error is not None else "BACKENDS (file)"
    for col in ("ROUTE", "MATCH", "METHODS", file_col, "LIVE", "SHADOW", "FALLBACK"):
        table.add_column(col, overflow="fold")
    for d in docs:
        m = d["match"]
        where = (f"= {m['exact']}" if m["exact"] else f"{m['prefix']}*") + (f" @{m['host']}" if m["host"] else "")
        lw = d.get("live_weights")
        table.add_row(d["name"], where, ",".join(m["methods"] or ["*"]),
                      " ".join(f"{k}={v}%" for k, v in d["weights"].items()),
                      " ".join(f"{k}={v}%" for k, v in lw.items()) if lw else "-",
                      f"{d['shadow']['to']} {d['shadow']['percent']:g}%" if d["shadow"] else "-",
                      d["fallback"] or "-")
    out.print(table)
    if not live:
        err.print("(no router running: LIVE shows nothing)")


def _load_or_fail(path: Path) -> Config:
    require_parts("router")
    from router.errors import ConfigError

    try:
        return load(path)
    except ConfigError as exc:
        raise CLIError(str(exc)) from exc


@app.command()
@guarded
def validate(
    file: Annotated[Path, typer.Argument(help="Routes file to check.")] = Path("routes.yaml"),
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Check a routes file with the router's own checker; exit 3 when it is invalid."""
    require_parts("router")
    from router.errors import ConfigError

    try:
        config = load(file)
    except ConfigError as exc:
        if json_out:
            print_json({"file": str(file), "valid": False, "error": str(exc),
                        "line": exc.line, "key_path": exc.key_path})
        else:
            err.print(f"[red]invalid:[/red] {exc}", highlight=False)
        raise typer.Exit(3) from None
    if json_out:
        print_json({"file": str(file), "valid": True, "routes": len(config.routes),
                    "upstreams": len(config.upstreams)})
    else:
        out.print(f"{file}: valid ({len(config.routes)} routes, {len(config.upstreams)} upstreams)")


def _git_head(path: Path) -> str | None:
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path.resolve().parent,
                             capture_output=True, text=True, check=True).stdout.strip()
        rel = path.resolve().relative_to(top)
        return subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=top, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


@app.command()
@guarded
def diff(
    routes: RoutesFile = Path("routes.yaml"),
    router: RouterURL = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Weights that differ: the file vs the running router (or vs git HEAD); exit 3 if any."""
    config = _load_or_fail(routes)
    mine = {r.name: r.weights for r in config.routes}
    live = live_weights(router)
    if live is not None:
        against, theirs = "running router", live
    else:
        head = _git_head(routes)
        if head is None:
            raise CLIError(f"nothing to diff {routes} against: no router runs and it is not committed in git")
        against = "git HEAD"
        from router.errors import ConfigError

        try:
            theirs = {r.name: r.weights for r in load(routes, head).routes}
        except ConfigError as exc:
            raise CLIError(f"the committed {routes} does not parse: {exc}") from exc
    changes: list[dict[str, Any]] = []
    for name in sorted(set(mine) | set(theirs)):
        if mine.get(name) != theirs.get(name):
            changes.append({"route": name, against: theirs.get(name), "file": mine.get(name)})
    if json_out:
        print_json({"against": against, "differences": changes})
    elif not changes:
        out.print(f"{routes} matches the {against}")
    else:
        for c in changes:
            def fmt(w: dict[str, int] | None) -> str:
                return "(absent)" if w is None else " ".join(f"{k}={v}" for k, v in w.items())
            out.print(f"{c['route']}: {against}: {fmt(c[against])}  ·  file: {fmt(c['file'])}", highlight=False)
    if changes:
        raise typer.Exit(3)
