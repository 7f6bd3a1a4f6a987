"""Start and stop a real nginx or HAProxy on loopback with a rendered configuration.

Place in the flow: the data-plane tests, and dataplane/follow.py, which keeps a started
plane on its routes file. Every
path the server writes (pid, logs, temp files) is in a throwaway folder, so it runs as any
user. The config is checked first (`nginx -t`, `haproxy -c`) and a refusal is raised with
the server's own words.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dataplane import haproxy, nginx
from dataplane.errors import ExportError
from dataplane.model import Plan

ACCESS_LOG = "access.jsonl"  # one JSON line per request: dataplane/numbers.py
ADMIN_SOCKET = "admin.sock"  # HAProxy's runtime API (dataplane/follow.py sets the cuts through it)
SOCKET_PATH_MAX = 97  # HAProxy's limit for a unix socket's path (sun_path, less its own suffix)
_INSTALL = {"nginx": "apt-get install -y nginx", "haproxy": "apt-get install -y haproxy"}


def binary(target: str) -> str:
    """The server's path, or ExportError naming the package to install."""
    found = shutil.which(target) or shutil.which(target, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise ExportError(f"{target} is not installed — fix: {_INSTALL[target]} "
                          "(`python -m devstack.apt` installs the suite's packages)")
    return found


@dataclass
class Running:
    target: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def access_log(self) -> Path:
        return self.folder / ACCESS_LOG

    @property
    def admin_socket(self) -> Path:
        return admin_socket(self.folder)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def limits(target: str, plan: Plan) -> list[str]:
    """What `plan` asks for that `target` (nginx|haproxy) will not do, route by route."""
    return nginx.limits(plan) if target == "nginx" else haproxy.limits(plan)


def admin_socket(folder: Path) -> Path:
    """Where HAProxy's runtime API listens for the plane in `folder`: in it, unless that path is
    longer than a unix socket's may be (a project in a deep folder); then in a private folder
    under the temporary directory, named after `folder`."""
    inside = folder / ADMIN_SOCKET
    if len(str(inside)) <= SOCKET_PATH_MAX:
        return inside
    private = Path(tempfile.gettempdir()) / f"strangler-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    return private / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:16]}.sock"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started us dies, even by
    SIGKILL (Linux), so no nginx or HAProxy outlives its `python -m dataplane` or test."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def files(target: str, plan: Plan, *, port: int, folder: Path) -> dict[str, str]:
    """The files that run `target` for `plan` from `folder` (name → text). Both log one JSON
    line per request to `folder`/ACCESS_LOG (HAProxy through its stdout: see `start`)."""
    listen = f"127.0.0.1:{port}"
    if target == "nginx":
        return {"nginx.conf": nginx.wrap(nginx.render(plan, listen=listen), prefix=str(folder),
                                         access_log=str(folder / ACCESS_LOG))}
    if target == "haproxy":
        cfg = haproxy.render(plan, listen=listen, lua_path=str(folder / "strangler.lua"),
                             extra_global=(f"pidfile {folder}/haproxy.pid",
                                           f"stats socket {admin_socket(folder)} mode 600 level admin",
                                           "log stdout format raw local0 info"))
        return {"haproxy.cfg": cfg, "strangler.lua": haproxy.lua_source(), haproxy.CUTS_FILE: haproxy.cuts_map(plan)}
    raise ExportError(f"unknown data plane {target!r} — fix: use nginx or haproxy")


def start(target: str, plan: Plan, *, port: int, timeout: float = 15.0, folder: Path | None = None) -> Running:
    """`target` serving `plan` on 127.0.0.1:`port`, answering once this returns. Its files in
    `folder` (kept: `strangler up` reads the access log there), else a throwaway one."""
    exe = binary(target)
    tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix=f"strangler-{target}-")
    folder = folder.absolute() if folder is not None else Path(tmp.name)  # type: ignore[union-attr]
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # nginx started as root runs its workers as nobody: they must get in
    for name, text in files(target, plan, port=port, folder=folder).items():
        (folder / name).write_text(text)
    if target == "nginx":
        check = [exe, "-t", "-q", "-p", str(folder), "-c", str(folder / "nginx.conf")]
        argv = [exe, "-p", str(folder), "-c", str(folder / "nginx.conf")]
    else:
        check = [exe, "-c", "-f", str(folder / "haproxy.cfg")]
        argv = [exe, "-W", "-db", "-f", str(folder / "haproxy.cfg")]  # master-worker: reloads on SIGUSR2
    done = subprocess.run(check, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        if tmp is not None:
            tmp.cleanup()
        raise ExportError(f"{target} refused the rendered config:\n{(done.stderr or done.stdout).strip()}")
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server writes it until it stops
    # HAProxy logs requests to its stdout (`log stdout`), its own messages to stderr
    requests = open(folder / ACCESS_LOG, "ab") if target == "haproxy" else log  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=folder, stdout=requests, stderr=log, preexec_fn=_die_with_parent)
    log.close()
    requests.close()
    running = Running(target=target, port=port, folder=folder, process=proc, _tmp=tmp)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = (folder / "server.log").read_text(errors="replace")
            running.stop()
            raise ExportError(f"{target} exited ({proc.returncode}) before serving:\n{out.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return running
        except OSError:
            time.sleep(0.05)
    running.stop()
    raise ExportError(f"{target} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")
