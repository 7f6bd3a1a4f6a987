"""What serves the stack's requests while ownership moves, and how the flip knows it serves a
given ownership.yaml: Strangler's router (its admin API: reload, then every worker's status)
or a data plane `strangler up --data-plane nginx|haproxy` runs (dataplane/follow.py follows
ownership.yaml and names the file it serves in its folder's applied.json).

A front `confirm`s an ownership file's sha256 once every request it answers from now on is
answered by that file (and, `drained`, no write the old file let through is still in flight).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from handover.errors import PhaseFailed
from handover.routersync import router_sync, router_url


class Front(Protocol):
    @property
    def name(self) -> str:
        """For the ledger and the messages: "router http://…", "nginx"."""
        ...

    @property
    def needs_token(self) -> bool:
        """Whether confirming needs the admin token (STRANGLER_ADMIN_TOKEN)."""
        ...

    def confirm(self, sha: str, group: str, *, drained: bool, timeout: float) -> int:
        """Wait until the front serves ownership `sha`; how many workers confirmed it."""
        ...

    def cannot_serve(self, group: str, owner: str) -> str | None:
        """Why this front could not deliver `group`'s writes to `owner` as the router does, or None."""
        ...


@dataclass(frozen=True)
class RouterFront:
    url: str
    needs_token = True  # its admin API reloads only with the admin token

    @property
    def name(self) -> str:
        return f"router {self.url}"

    def confirm(self, sha: str, group: str, *, drained: bool, timeout: float) -> int:
        return router_sync(self.url, sha, group, drained=drained, timeout=timeout)

    def cannot_serve(self, group: str, owner: str) -> str | None:
        return None


@dataclass(frozen=True)
class PlaneFront:
    """nginx or HAProxy kept on routes.yaml and ownership.yaml by a Follower. Its applied.json
    is written after a reload's old workers exited, so an ownership sha there means every
    request the old file let through has been answered: confirmed is drained."""

    name: str
    folder: Path
    routes: Path
    needs_token = False

    def cannot_serve(self, group: str, owner: str) -> str | None:
        """The identity bridge is the router's alone (it signs with its key after asking the
        monolith who the caller is): through a plane, a service behind an `identity: true`
        route sees no user, so every write that needs one would be refused."""
        from router.config import load_config
        from router.errors import RouterError

        try:
            cfg = load_config(self.routes)
        except RouterError as exc:
            return f"its routes file does not load: {exc}"
        knows = cfg.identity.upstream if cfg.identity is not None else None
        signed = [r.name for r in cfg.routes if r.writes == group and r.identity and owner != knows]
        if not signed:
            return None
        return (f"route(s) {', '.join(signed)} carry {group}'s writes with `identity: true`, and {self.name} "
                f"cannot sign X-Strangler-Identity: {owner} would see no user and refuse every write that "
                "needs one (401)")

    def confirm(self, sha: str, group: str, *, drained: bool, timeout: float) -> int:
        from dataplane.follow import read_applied

        deadline = time.monotonic() + timeout
        while True:
            doc = read_applied(self.folder)
            if doc.get("ownership_sha256") == sha:
                how = str(doc.get("how", ""))
                if drained and how.startswith("reload ("):  # its old workers may still answer writes
                    raise PhaseFailed(f"{self.name} serves ownership {sha[:12]}, but {how}: a write of {group} "
                                      "may still be in flight on them; run this again once they are gone")
                return 1
            refused = doc.get("refused") or {}
            if refused.get("ownership_sha256") == sha:
                raise PhaseFailed(f"{self.name} refused the new ownership.yaml and keeps the old one: "
                                  f"{refused.get('error')}")
            if time.monotonic() >= deadline:
                raise PhaseFailed(f"{self.name} did not confirm ownership {sha[:12]} within {timeout:.1f} s (it "
                                  f"serves {str(doc.get('ownership_sha256'))[:12]}): is `strangler up --data-plane "
                                  f"{self.name}` still running? See `strangler logs {self.name}`")
            time.sleep(0.05)


def find_front(explicit_router: str | None) -> RouterFront | PlaneFront | None:
    """The router answering at --router / the stack's URL; else the data plane the stack runs;
    else None (a router or plane started later reads ownership.yaml itself)."""
    url = router_url(explicit_router)
    if url is not None:
        return RouterFront(url)
    if explicit_router is None:
        plane = _running_plane()
        if plane is not None:
            return PlaneFront(*plane)
    return None


def _running_plane() -> tuple[str, Path, Path] | None:
    from stack.model import part_present

    if not part_present("dataplane"):
        return None
    from control.planecontrol import running_plane

    found = running_plane()
    return (found[0], found[2], found[1]) if found else None
