"""Drawing a map: a Mermaid flowchart (always), Graphviz DOT → SVG (when ``dot`` is installed).

Nodes are contexts (their apps and table count); an edge joins two contexts that are coupled,
labelled with its score and what makes it up. Contexts of Django or libraries are drawn dashed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

_ABBREV = {"imports": "imp", "foreign_keys": "fk", "signals": "sig", "foreign_writes": "write",
           "transactions": "tx", "joins": "join"}


def _id(name: str) -> str:
    return "c_" + re.sub(r"\W", "_", name)


def _label(doc: dict[str, Any], edge: dict[str, Any]) -> str:
    parts = " ".join(f"{_ABBREV.get(k, k)}:{v:g}" for k, v in edge.get("parts", {}).items())
    return f"{edge['score']:g} ({parts})" if parts else f"{edge['score']:g}"


def _drawn(doc: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Contexts to draw: the project's, and external ones something couples to."""
    edges = [e for e in doc["coupling"] if e["score"] > 0]
    touched = {e["a"] for e in edges} | {e["b"] for e in edges}
    names = [n for n, c in doc["contexts"].items() if not c.get("external") or n in touched]
    return names, edges


def mermaid(doc: dict[str, Any]) -> str:
    names, edges = _drawn(doc)
    lines = ["flowchart LR"]
    for n in names:
        c = doc["contexts"][n]
        apps = ", ".join(c["apps"])
        lines.append(f'  {_id(n)}["{n}<br/><small>{apps} · {len(c["tables"])} tables</small>"]')
    for e in edges:
        lines.append(f'  {_id(e["a"])} ---|"{_label(doc, e)}"| {_id(e["b"])}')
    external = [n for n in names if doc["contexts"][n].get("external")]
    if external:
        lines.append("  classDef external stroke-dasharray: 4 3,color:#666")
        lines.append(f"  class {','.join(_id(n) for n in external)} external")
    return "\n".join(lines) + "\n"


def dot(doc: dict[str, Any]) -> str:
    names, edges = _drawn(doc)
    top = max((e["score"] for e in edges), default=1.0) or 1.0
    lines = [f'graph "{doc["project"]}" {{', "  graph [overlap=false, splines=true, fontname=Helvetica];",
             "  node [shape=box, style=rounded, fontname=Helvetica];", "  edge [fontname=Helvetica, fontsize=9];"]
    for n in names:
        c = doc["contexts"][n]
        style = ', style="rounded,dashed", fontcolor="#666666"' if c.get("external") else ""
        lines.append(f'  {_id(n)} [label="{n}\\n{len(c["tables"])} tables"{style}];')
    for e in edges:
        width = 1 + 4 * e["score"] / top
        lines.append(f'  {_id(e["a"])} -- {_id(e["b"])} [label="{_label(doc, e)}", penwidth={width:.1f}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_binary() -> str | None:
    return shutil.which("dot")


def svg(doc: dict[str, Any], path: Path) -> str | None:
    """Write the SVG with Graphviz; None when written, else a note saying why not and what to do."""
    binary = dot_binary()
    if binary is None:
        return ("no SVG: Graphviz's `dot` is not installed (apt-get install graphviz, or brew "
                "install graphviz); the Mermaid diagram has the same graph")
    proc = subprocess.run([binary, "-Tsvg", "-o", str(path)], input=dot(doc), text=True,
                          capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        return f"no SVG: dot failed (exit {proc.returncode}): {proc.stderr.strip()[:500]}"
    return None
