"""The demo's step 4: catalog writes move to the service with `strangler own`, under traffic.

`cli.demo` calls these in order: `write_ownership` (the demo's own ownership.yaml, a copy of
the repository's: the monolith owns), `enforce` once both streams run (the catalog's copy
refuses application writes from then on), `move_writes` (the flip, as a process, exactly as
a user would run it) and, at the end, `verify` in both directions (cli.demo.verify).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cli.errors import StackError

REPO = Path(__file__).resolve().parent.parent
GROUP = "catalog"


def write_ownership(home: Path) -> Path:
    """The demo's ownership file, beside its routes (the router and the streams read it)."""
    path = home / "ownership.yaml"
    shutil.copyfile(REPO / "ownership.yaml", path)
    return path


def enforce(env: dict[str, str]) -> dict[str, Any]:
    """Guards on the non-owner side's database, as `strangler up` sets them."""
    from cli.own import enforce_declared

    return enforce_declared(REPO / "streams.yaml", env)


def move_writes(home: Path, env: dict[str, str], *, router_url: str) -> dict[str, Any]:
    """`strangler own catalog --by catalog`: hold, drain, guard, ids, reverse, flip; its JSON."""
    argv = [sys.executable, "-m", "cli.main", "own", GROUP, "--by", "catalog", "--reason",
            "demo: the catalog service takes over its writes", "--routes", str(home / "routes.yaml"),
            "--router", router_url, "--json"]
    proc = subprocess.run(argv, cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    (home / "logs" / "own.log").write_text(proc.stderr)
    try:
        doc = dict(json.loads(proc.stdout))
    except ValueError:
        doc = {}
    if proc.returncode != 0 or doc.get("outcome") != "done":
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StackError(f"`strangler own {GROUP} --by catalog` failed (exit {proc.returncode}): {last}; "
                         f"see {home / 'logs' / 'own.log'}")
    return doc
