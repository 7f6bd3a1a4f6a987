"""The learner's workspace: `.strangler/workshop/N/` per exercise, and the progress file.

    .strangler/workshop/progress.json   per exercise: started, last check, passed, hints seen
    .strangler/workshop/N/<file>        the learner's copy of each file the exercise edits
    .strangler/workshop/N/<db>.sqlite3  the exercise's databases, built from start/<db>.sql

Files and SQL may say ``{{workspace}}``: it becomes the exercise folder's absolute path, so a
streams.yaml copied there points at the databases beside it. ``STRANGLER_STATE_DIR`` moves
`.strangler/` as everywhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from workshop.errors import WorkshopError
from workshop.model import Exercise

PLACEHOLDER = "{{workspace}}"


def root() -> Path:
    explicit = os.environ.get("STRANGLER_STATE_DIR")
    base = Path(explicit) if explicit else Path.cwd() / ".strangler"
    return base / "workshop"


def folder(ex: Exercise) -> Path:
    return root() / str(ex.number)


def _fill(text: str, where: Path) -> str:
    return text.replace(PLACEHOLDER, str(where.absolute()))


def place(ex: Exercise, source: Path, *, only: tuple[str, ...] | None = None) -> list[Path]:
    """Copy `ex.files` found in `source` (start/ or solution/) into the workspace, filled in."""
    where = folder(ex)
    where.mkdir(parents=True, exist_ok=True)
    written = []
    for name in only or ex.files:
        src = source / name
        if not src.exists():
            continue
        dst = where / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(_fill(src.read_text(), where))
        written.append(dst)
    return written


def build_databases(ex: Exercise) -> list[Path]:
    """(Re)create each database of the exercise from its SQL script: the starting rows."""
    where = folder(ex)
    made = []
    for name, script in ex.databases.items():
        db = where / f"{name}.sqlite3"
        for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            leftover.unlink(missing_ok=True)
        conn = sqlite3.connect(db)
        try:
            conn.executescript(_fill((ex.start_dir / script).read_text(), where))
            conn.commit()
        finally:
            conn.close()
        made.append(db)
    return made


def start(ex: Exercise, *, fresh: bool = False) -> Path:
    """Lay out the exercise (files, databases) unless already there; `fresh` starts over."""
    where = folder(ex)
    if fresh or not where.exists():
        reset(ex)
    mark(ex, started=time.time())
    return where


def reset(ex: Exercise) -> Path:
    """Back to the exercise's start: files, databases, and the stream state kept beside them."""
    where = folder(ex)
    _remove(where)
    where.mkdir(parents=True)
    place(ex, ex.start_dir)
    build_databases(ex)
    mark(ex, passed=False, checked=None)
    return where


def reset_all() -> Path:
    """Remove the whole workshop workspace (every exercise, progress, break-it records)."""
    base = root()
    _remove(base)
    return base


def _remove(where: Path) -> None:
    if not where.exists():
        return
    try:
        shutil.rmtree(where)
    except OSError as exc:
        raise WorkshopError(f"cannot remove {where} ({exc.strerror}: {exc.filename}): a process of the exercise "
                            "still writes there (a `strangler cdc run` of its streams?); stop it (Ctrl-C), "
                            "then reset again") from exc


def require(ex: Exercise) -> Path:
    where = folder(ex)
    if not where.exists():
        raise WorkshopError(f"exercise {ex.number} is not started; run `strangler workshop start {ex.number}`")
    return where


# ---- progress ----------------------------------------------------------------------------

def _progress_file() -> Path:
    return root() / "progress.json"


def progress() -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(_progress_file().read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def mark(ex: Exercise, **changes: Any) -> dict[str, Any]:
    doc = progress()
    entry = doc.setdefault(str(ex.number), {})
    if "hints" in changes:
        changes["hints"] = max(int(entry.get("hints") or 0), int(changes["hints"]))
    entry.update(changes)
    path = _progress_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".progress.json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return entry
