"""Keep a running nginx or HAProxy on its routes file: what `strangler shift`, a rollout or an
edit writes to routes.yaml reaches the data plane, with the one ledger `router/edit.py` keeps.

Place in the flow: `dataplane.run.start` starts the plane from a plan; `Follower.sync()`
(or `Follower.follow()` in a thread) re-reads the routes file when its bytes change, plans it
with the router's own loader, and applies it:
- HAProxy: when only weights changed (the rendered haproxy.cfg is the same text, since the
  slice bounds live in strangler-cuts.map), the new bounds go in through the runtime API as
  one map transaction (`prepare map` / `add map` / `commit map`: no request sees half of a
  change, nothing restarts), then the map file is rewritten so a restart keeps them. Any
  other change: the new config is checked (`haproxy -c`) and the master reloads (SIGUSR2).
- nginx: the new nginx.conf is checked (`nginx -t`), swapped in, and the master reloads
  (SIGHUP): new workers take new connections, the old ones finish theirs and exit.
A routes file the router refuses, or a config the server refuses, changes nothing: the plane
keeps its last good state and `sync` says what went wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplane import haproxy, run
from dataplane.errors import ExportError
from dataplane.model import Plan, load_plan

DRAIN_SECONDS = 30.0  # how long nginx's old workers may take to finish what they hold


@dataclass(frozen=True)
class Applied:
    """What one sync did: `how` is "runtime API" (HAProxy, no reload), "reload" (the old
    workers are gone: every answer is the new config's; a longer text if they still finish
    after DRAIN_SECONDS), or "refused" with `error` saying why (the last good state stays)."""

    sha256: str
    how: str
    error: str | None = None


# in the plane's folder: the sha256 of the routes file (and of the ownership file) it serves
APPLIED = "applied.json"


def read_applied(folder: Path) -> dict[str, Any]:
    """What the plane in `folder` says it serves (Follower._record's document); {} before it
    wrote one. Written atomically, so a read sees a whole document or none."""
    try:
        doc = json.loads((folder / APPLIED).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class Follower:
    """Keeps `running` on `routes`; `running` serves `plan` now. What it serves is written to
    the plane's folder (APPLIED) after every change, for whoever steers it (control.planecontrol)."""

    def __init__(self, running: run.Running, routes: Path, plan: Plan) -> None:
        self.running, self.routes, self.plan = running, routes, plan
        self.serving, own_sha = self._inputs(plan)  # the bytes `plan` came from
        self.refused: str | None = None  # a refused file is reported once, not per poll
        self.own_sha, self.how = own_sha, "start"
        self._record()

    def _inputs(self, plan: Plan) -> tuple[str, str | None]:
        """A digest of every file the plan is made of: routes.yaml and its ownership.yaml (a flip
        changes only the latter), and the ownership file's own sha256 (None without one). Read
        before planning: what is recorded as served is never newer than what was planned."""
        digest = hashlib.sha256(hashlib.sha256(self.routes.read_bytes()).digest())
        own_sha = None
        if plan.ownership_source:
            with contextlib.suppress(FileNotFoundError):
                own_sha = hashlib.sha256(Path(plan.ownership_source).read_bytes()).hexdigest()
            digest.update((own_sha or "-").encode())
        return digest.hexdigest(), own_sha

    def sync(self) -> Applied | None:
        """Apply the routes file (and its ownership file) if their bytes changed, or a hold in
        them lapsed; None if nothing is to do."""
        try:
            inputs, own_sha = self._inputs(self.plan)
        except OSError as exc:
            return self._refused("-", f"cannot read {self.routes}: {exc.strerror} — the {self.running.target} "
                                      f"keeps serving the last good file (sha256 {self.plan.sha256[:16]})")
        lapsed = self.plan.hold_ends is not None and time.time() >= self.plan.hold_ends
        if inputs in (self.serving, self.refused) and not lapsed:  # a lapsed hold: made again, released
            return None
        try:
            plan = load_plan(self.routes)
        except (ExportError, OSError) as exc:
            return self._refused(inputs, f"{exc} — the {self.running.target} keeps serving the last good "
                                         f"file (sha256 {self.plan.sha256[:16]})", own_sha)
        try:
            how = (_haproxy(self.running, self.plan, plan) if self.running.target == "haproxy"
                   else _nginx(self.running, plan))
        except ExportError as exc:
            return self._refused(inputs, str(exc), own_sha)
        self.plan, self.serving, self.refused, self.own_sha, self.how = plan, inputs, None, own_sha, how
        self._record()
        return Applied(sha256=plan.sha256, how=how)

    def _record(self, refused: dict[str, str | None] | None = None) -> None:
        """What the plane serves; and the files it last refused, so that whoever waits for them
        (handover/front.py, `strangler own`) hears why at once rather than at a timeout."""
        _write(self.running.folder / APPLIED, json.dumps({
            "sha256": self.plan.sha256, "ownership_sha256": self.own_sha, "how": self.how, "time": time.time(),
            **({"refused": refused} if refused else {})}))

    def follow(self, stop: threading.Event, *, interval: float = 0.1,
               report: Callable[[Applied], None] = lambda applied: None) -> None:
        """`sync` every `interval` seconds until `stop` is set; each change goes to `report`."""
        while not stop.wait(interval):
            applied = self.sync()
            if applied is not None:
                report(applied)

    def _refused(self, inputs: str, error: str, own_sha: str | None = None) -> Applied | None:
        if inputs == self.refused:
            return None
        self.refused = inputs
        routes_sha = None
        with contextlib.suppress(OSError):
            routes_sha = hashlib.sha256(self.routes.read_bytes()).hexdigest()
        self._record({"sha256": routes_sha, "ownership_sha256": own_sha, "error": error})
        return Applied(sha256=inputs, how="refused", error=error)


def _haproxy(running: run.Running, old: Plan, new: Plan) -> str:
    files = run.files("haproxy", new, port=running.port, folder=running.folder)
    cuts_path = running.folder / haproxy.CUTS_FILE
    if _body(files["haproxy.cfg"]) == _body(run.files("haproxy", old, port=running.port, folder=running.folder)
                                                  ["haproxy.cfg"]):
        entries = haproxy.cut_entries(new)
        version = runtime_api(running, f"prepare map {cuts_path}").split(":")[-1].strip()
        if not version.isdigit():
            raise ExportError(f"HAProxy's runtime API refused `prepare map`: {version!r} — the plane keeps "
                              "its weights; check the stats socket in haproxy.cfg")
        commands = [f"add map @{version} {cuts_path} {key} {value}" for key, value in entries.items()]
        answer = runtime_api(running, ";".join([*commands, f"commit map @{version} {cuts_path}"]))
        if answer.strip():
            raise ExportError(f"HAProxy's runtime API refused the new weights: {answer.strip()} — the plane "
                              "keeps its weights")
        _write(cuts_path, files[haproxy.CUTS_FILE])  # so a restart starts from them
        return "runtime API"
    _check(running, new, files, check=lambda folder: [run.binary("haproxy"), "-c", "-f", str(folder / "haproxy.cfg")])
    return _reload(running, signal.SIGUSR2)  # master-worker: a new worker on the new config


def _nginx(running: run.Running, new: Plan) -> str:
    files = run.files("nginx", new, port=running.port, folder=running.folder)
    _check(running, new, files, check=lambda folder: [run.binary("nginx"), "-t", "-q", "-p", str(folder),
                                                      "-c", str(folder / "nginx.conf")])
    return _reload(running, signal.SIGHUP)


def _reload(running: run.Running, sig: signal.Signals) -> str:
    """Signal the master to reload; return once the old workers are gone: until then they may
    still accept connections and answer with the old config. They finish what is in flight."""
    before = workers(running)
    running.process.send_signal(sig)
    deadline = time.monotonic() + DRAIN_SECONDS
    while before & workers(running) or not workers(running):
        if time.monotonic() > deadline:  # applied, but old connections still see the old config
            return (f"reload (old workers still finishing long requests or keep-alive connections after "
                    f"{DRAIN_SECONDS:.0f} s)")
        time.sleep(0.01)
    return "reload"


def _check(running: run.Running, plan: Plan, files: dict[str, str], *,
           check: Callable[[Path], list[str]]) -> None:
    """Have the server check `plan` rendered into a staging folder, then swap `files` in."""
    staging = running.folder / "next"
    staging.mkdir(exist_ok=True)
    for name, text in run.files(running.target, plan, port=running.port, folder=staging).items():
        (staging / name).write_text(text)
    done = subprocess.run(check(staging), capture_output=True, text=True, cwd=staging)
    if done.returncode != 0:
        raise ExportError(f"{running.target} refused the new config, so it keeps the old one:\n"
                          f"{(done.stderr or done.stdout).strip()}")
    for name, text in files.items():
        _write(running.folder / name, text)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _body(cfg: str) -> str:
    """haproxy.cfg without its comment header (the source's sha256 changes with every edit)."""
    return "\n".join(line for line in cfg.splitlines() if not line.startswith("#"))


def runtime_api(running: run.Running, command: str, *, timeout: float = 5.0) -> str:
    """One line to HAProxy's runtime API (commands may be joined with ';'); its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(running.admin_socket))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def workers(running: run.Running) -> set[int]:
    """The pids of the master's children (nginx's workers; HAProxy's worker)."""
    pid = running.process.pid
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()
