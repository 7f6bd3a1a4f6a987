"""Hot reload: file watch, SIGHUP and the admin API all end in one validated, atomic swap.

Place in the flow: beside the request path. `ConfigWatcher.check` reads the routes file and
the ownership file it names (watched alike), validates them whole (a bad file is refused with
the reason; the running config stays), ledgers what changed in the routes unless the writer
already did (the ledger remembers the file hash each entry produced), and returns the new
`Config`. The router then swaps snapshots with
one assignment: requests already in flight finish on the config they started with.

With several workers, the supervisor is the *leader* (it writes ledger entries for hand
edits) and every worker watches the file too, without ledgering.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router import ledger
from router.config import Config, diff_weights, load_config
from router.errors import ConfigError

if TYPE_CHECKING:
    from router.types import RouterCore as Router


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigWatcher:
    """Tracks one routes file: what is running, and whether the file on disk changed."""

    def __init__(self, path: Path, *, leader: bool, current: Config | None = None) -> None:
        self.path = path
        self.leader = leader
        self.current = current
        self.stamp = self._stamp()
        self.last: dict[str, Any] = {"ok": True, "at": None, "source": "start", "error": None}

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        """The routes file's and the ownership file's (mtime, size, inode); None: absent."""
        own = self.current.ownership_path if self.current is not None else None
        return (_stat(self.path),) + ((_stat(own),) if own is not None else ())

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp != self.stamp:
            self.stamp = stamp
            return True
        return False

    def check(self, actor: str) -> Config | None:
        """The new config if the file holds a valid, different one; None otherwise."""
        self.stamp = self._stamp()
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            self.last = {"ok": False, "at": time.time(), "source": actor, "error": str(exc)}
            print(f"strangler router: reload from {actor} refused, still serving the previous "
                  f"config: {exc}", file=sys.stderr, flush=True)
            return None
        self.last = {"ok": True, "at": time.time(), "source": actor, "error": None}
        same_routes = self.current is not None and config.sha256 == self.current.sha256
        if same_routes and config.ownership_sha256 == self.current.ownership_sha256:  # type: ignore[union-attr]
            return None
        # An ownership-only change is `strangler own`'s (it ledgers its phases itself).
        if self.leader and self.current is not None and not same_routes and \
                not ledger.recorded(config.ledger_path, config.sha256):
            reason = f"routes file changed ({actor})"
            changes = diff_weights(self.current, config)
            for route, old, new in changes:
                ledger.append(config.ledger_path, actor=actor, route=route, old=old, new=new,
                              reason=reason, config_sha256=config.sha256)
            if not changes:
                ledger.append(config.ledger_path, actor=actor, route="*", old={}, new={},
                              reason=f"{reason}: {self.current.sha256[:12]} → {config.sha256[:12]}",
                              config_sha256=config.sha256)
        self.current = config
        return config


class Reloader:
    """The router's side: watch the file, answer SIGHUP and admin reloads."""

    def __init__(self, router: Router, *, leader: bool) -> None:
        self.router = router
        self.leader = leader
        self.watcher: ConfigWatcher | None = None

    def _watcher(self) -> ConfigWatcher:
        if self.watcher is None:
            assert self.router.config_path is not None
            snap = self.router.snapshot
            self.watcher = ConfigWatcher(self.router.config_path, leader=self.leader,
                                         current=snap.config if snap else None)
        return self.watcher

    def reload(self, actor: str) -> dict[str, Any]:
        """Re-read the file now; returns {"ok", "changed", "error"}."""
        if self.router.config_path is None:
            return {"ok": False, "changed": False, "error": "this router was started without a routes file"}
        watcher = self._watcher()
        config = watcher.check(actor)
        if config is not None:
            self.router.install(config)
        return {"ok": watcher.last["ok"], "changed": config is not None, "error": watcher.last["error"],
                "sha256": watcher.current.sha256 if watcher.current else None,
                "ownership_sha256": watcher.current.ownership_sha256 if watcher.current else None}

    def on_sighup(self) -> None:
        self.reload("sighup")

    async def watch(self) -> None:
        watcher = self._watcher()
        while True:
            snap = self.router.snapshot
            await asyncio.sleep(snap.config.reload_interval if snap else 1.0)
            if watcher.changed():
                self.reload("file-watch")

    def status(self) -> dict[str, Any]:
        return dict(self._watcher().last) if self.router.config_path else {"ok": True}
