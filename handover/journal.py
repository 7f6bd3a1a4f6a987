"""A flip's own record and lock: `.strangler/own/<group>.json` (the phases done, so a crashed
flip resumes) and `.strangler/own/<group>.lock` (one flip of a group at a time)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from handover.errors import Refused
from stack import state


def _own_dir() -> Path:
    path = state.state_dir() / "own"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_state(group: str) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((_own_dir() / f"{group}.json").read_text())
    except (OSError, ValueError):
        return None
    return doc


def save_state(group: str, doc: dict[str, Any]) -> None:
    path = _own_dir() / f"{group}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def clear_state(group: str) -> None:
    (_own_dir() / f"{group}.json").unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(group: str) -> Iterator[None]:
    """One `own` per group at a time: a non-blocking lock; the holder's pid in the file."""
    path = _own_dir() / f"{group}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Refused(f"another strangler own {group} is running (pid {pid}); wait for it to "
                          "finish, or if it died, run this again to resume it", 1) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
