"""The exercises, as data: `workshop/data/NN-slug/exercise.yaml`, its start/ and solution/.

exercise.yaml: title, step, goal, task, files (what the learner edits), databases (name: SQL
script under start/), hints (tiers, mildest first), check (a function in workshop.checks).
Validated on load; an error names the file and key.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from workshop.errors import NotFound, WorkshopError
from workshop.model import Exercise

DATA = Path(__file__).parent / "data"
REQUIRED = ("title", "step", "goal", "task", "files", "hints", "check")


def _load_one(folder: Path) -> Exercise:
    path = folder / "exercise.yaml"
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WorkshopError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(doc, dict):
        raise WorkshopError(f"{path}: expected a mapping of {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise WorkshopError(f"{path}: missing {', '.join(missing)}")
    unknown = set(doc) - set(REQUIRED) - {"databases"}
    if unknown:
        raise WorkshopError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    number_text, _, slug = folder.name.partition("-")
    from workshop import checks

    if not callable(getattr(checks, str(doc["check"]), None)):
        raise WorkshopError(f"{path}: check {doc['check']!r} is not a function in workshop/checks.py")
    hints = tuple(str(h).strip() for h in doc["hints"])
    if not hints:
        raise WorkshopError(f"{path}: hints: give at least one tier")
    ex = Exercise(number=int(number_text), slug=slug, title=str(doc["title"]), step=str(doc["step"]),
                  goal=str(doc["goal"]).strip(), task=str(doc["task"]).strip(),
                  files=tuple(doc["files"]), databases=dict(doc.get("databases") or {}),
                  hints=hints, check=str(doc["check"]), folder=folder)
    for name in ex.files:
        if not (ex.start_dir / name).exists() and not (ex.solution_dir / name).exists():
            raise WorkshopError(f"{path}: files: {name} is in neither start/ nor solution/")
    for name, script in ex.databases.items():
        if not (ex.start_dir / script).exists():
            raise WorkshopError(f"{path}: databases.{name}: start/{script} does not exist")
    return ex


@cache
def all_exercises() -> tuple[Exercise, ...]:
    return tuple(sorted((_load_one(f) for f in DATA.iterdir() if (f / "exercise.yaml").exists()),
                        key=lambda e: e.number))


def get(which: str | int) -> Exercise:
    """An exercise by number or slug."""
    for ex in all_exercises():
        if str(which) in (str(ex.number), ex.slug):
            return ex
    names = ", ".join(f"{e.number} ({e.slug})" for e in all_exercises())
    raise NotFound(f"no exercise {which!r}; there are: {names}")


def run_check(ex: Exercise, where: Path) -> Any:
    from workshop import checks

    return getattr(checks, ex.check)(where)
