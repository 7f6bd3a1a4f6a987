"""monolith/TANGLES.md: every tangle it lists is in the code, at the file and line it gives."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TANGLES = ROOT / "monolith" / "TANGLES.md"
ROW = re.compile(r"^\| (T\d+[a-z]?) \| (.+?) \| `([^`]+):(\d+)` \| `([^`]+)` \| (.+?) \| (.+?) \|$")


def rows() -> list[re.Match[str]]:
    found = [m for line in TANGLES.read_text().splitlines() if (m := ROW.match(line))]
    table_lines = [line for line in TANGLES.read_text().splitlines() if re.match(r"^\| T\d", line)]
    assert len(found) == len(table_lines), "a table row does not parse; keep the column format"
    return found


def test_at_least_ten_tangles_with_unique_ids() -> None:
    ids = [m.group(1) for m in rows()]
    assert len(ids) >= 10
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("row", rows(), ids=lambda m: m.group(1))
def test_cited_line_contains_the_named_thing(row: re.Match[str]) -> None:
    tid, _, path, line, look, why, step = row.groups()
    source = ROOT / path
    assert source.is_file(), f"{tid}: {path} does not exist"
    lines = source.read_text().splitlines()
    number = int(line)
    assert 1 <= number <= len(lines), f"{tid}: {path} has only {len(lines)} lines"
    assert look in lines[number - 1], (
        f"{tid}: {path}:{number} is {lines[number - 1].strip()!r}, expected it to contain {look!r}")
    assert len(why) > 40, f"{tid}: say why it hurts an extraction"
    assert re.search(r"\b[1-7]\b", step), f"{tid}: name the migration step (1-7)"


def test_the_required_kinds_are_all_there() -> None:
    titles = " ".join(m.group(2).lower() for m in rows())
    for kind in ("string reference", "signals", "god", "denormalised", "nesting", "raw-sql",
                 "transaction", "circular import", "auth/session", "model method"):
        assert kind in titles, f"no tangle of kind {kind!r}"


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}


def test_circular_import_is_real_and_papered_over() -> None:
    catalog = ROOT / "monolith" / "catalog" / "models.py"
    inventory = ROOT / "monolith" / "inventory" / "models.py"
    assert "monolith.catalog.models" in top_level_imports(inventory)
    assert "monolith.inventory.models" not in top_level_imports(catalog)
    assert "from monolith.inventory.models import" in catalog.read_text()  # inside a method


def test_every_context_imports_the_god_module() -> None:
    users = {p.parent.name for p in (ROOT / "monolith").glob("*/*.py")
             if "monolith.utils" in p.read_text()}
    assert {"catalog", "customers", "orders", "inventory", "payments", "shipping",
            "notifications"} <= users
