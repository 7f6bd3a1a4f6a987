"""The change ledger: an append-only JSON-lines file of every routing change.

Place in the flow: written by `router.edit` (weights, header routes, shadows: CLI and admin API) and by the reloader
when it sees a change it did not write itself (a hand edit picked up by the file watch or
SIGHUP). One line per change: time, actor, route, old → new weights, reason, and the
sha256 of the routes file it produced (so a reload can tell it was already recorded).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any


def append(path: Path, *, actor: str, route: str, old: dict[str, int], new: dict[str, int],
           reason: str, config_sha256: str = "") -> dict[str, Any]:
    """Append one entry (under an exclusive lock, fsynced) and return it."""
    return append_record(path, {"actor": actor, "route": route, "old": old, "new": new,
                                "reason": reason, "config_sha256": config_sha256})


def append_record(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Append any entry, stamped with time and ts (under an exclusive lock, fsynced).

    Also what the CLI writes for changes the router does not make (ownership flips, gate
    overrides), so the whole ledger has one writer's locking and format.
    """
    full = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ts": round(time.time(), 3),
            **entry}
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(full, separators=(",", ":"), default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return full


def tail(path: Path, n: int = 50) -> list[dict[str, Any]]:
    """The last `n` entries (oldest first); [] when there is no ledger yet."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for raw in lines[-n:]:
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue  # a torn first line from the seek
    return out


def recorded(path: Path, config_sha256: str) -> bool:
    """Whether a recent entry already produced the routes file with this hash."""
    return any(e.get("config_sha256") == config_sha256 for e in tail(path, 200))
