"""The process supervisor behind `strangler up / down / ps / logs`.

It starts the processes of a `stack.model.Stack` on loopback, each in its own session
(so a Ctrl-C in the terminal reaches only the supervisor, which then stops them in order),
with stdout+stderr in `.strangler/logs/<name>.log` and a pid file in `.strangler/run/`.
Before anything starts it checks every binary and every port, so a missing binary or a
taken port is reported by name with nothing left running; a process that exits early or
never answers its readiness URL stops the whole start, again with nothing left running.

Pid files record the process start time (Linux `/proc`), so `down` never signals a
recycled pid that now belongs to someone else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stack.errors import AlreadyRunning, MissingBinary, NeverReady, PortInUse, StackError
from stack.model import Process, Stack, Task

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Running:
    """One supervised process as its pid file and `/proc` see it."""

    name: str
    pid: int
    port: int | None
    url: str | None
    log: str
    started_at: float
    alive: bool


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if gone/unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether `pid` runs and (when known) is still the process that was started then.

    A zombie (exited, not yet reaped by its parent) does not count as running.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return start_time is None
    if not os.path.exists("/proc"):
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return False
    return start_time is None or (len(fields) > 19 and fields[19] == start_time)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _binary_found(argv0: str) -> bool:
    if os.sep in argv0:
        return os.path.isfile(argv0) and os.access(argv0, os.X_OK)
    return shutil.which(argv0) is not None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts, stops and lists the processes of a stack, keyed by name in a state folder."""

    def __init__(self, *, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        run_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)

    # -- inspection -------------------------------------------------------------------

    def _pidfiles(self) -> list[Path]:
        return sorted(p for p in self.run_dir.glob("*.json") if p.name != "stack.json")

    def running(self) -> list[Running]:
        """Every process with a pid file, in start order, alive or not."""
        found = []
        for path in self._pidfiles():
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            found.append(
                Running(
                    name=info["name"], pid=info["pid"], port=info.get("port"),
                    url=info.get("url"), log=info.get("log", ""),
                    started_at=info.get("started_at", 0.0),
                    alive=pid_alive(info["pid"], info.get("start_time")),
                )
            )
        return sorted(found, key=lambda r: r.started_at)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # -- start ------------------------------------------------------------------------

    def preflight(self, stack: Stack) -> None:
        """Refuse before starting anything: something still running, a binary, a port."""
        still = [r for r in self.running() if r.alive]
        if still:
            names = ", ".join(f"{r.name} (pid {r.pid})" for r in still)
            raise AlreadyRunning(
                f"a stack from {self.run_dir.parent} is still running: {names}. "
                "Run `strangler down` first (or `strangler ps` to see it)."
            )
        items: list[Task | Process] = [*stack.setup, *stack.processes]
        for item in items:
            if not _binary_found(item.argv[0]):
                raise MissingBinary(
                    f"{item.name}: `{item.argv[0]}` is not installed or not on PATH"
                    + (f" ({item.install_hint})" if item.install_hint else "")
                )
        for proc in stack.processes:
            if proc.port is not None and not port_free(proc.port, proc.host):
                raise PortInUse(
                    f"{proc.name}: port {proc.port} on {proc.host} is already in use. Stop what "
                    f"listens there (`ss -ltnp 'sport = :{proc.port}'`) or pick another port."
                )

    def run_task(self, task: Task, progress: Progress = _quiet) -> None:
        """Run one setup step to completion; its output goes to its log."""
        progress(f"{task.name}: {' '.join(task.argv[-3:])}")
        log = self.log_path(task.name)
        with log.open("ab") as out:
            try:
                proc = subprocess.run(
                    list(task.argv), env=self._env(task.env), cwd=task.cwd,
                    stdout=out, stderr=subprocess.STDOUT, timeout=task.timeout, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise StackError(
                    f"{task.name} did not finish in {task.timeout:.0f}s; its log: {log}"
                ) from exc
        if proc.returncode != 0:
            raise StackError(
                f"{task.name} failed (exit {proc.returncode}); last lines of {log}:\n{_tail(log)}"
            )

    def start(self, stack: Stack, progress: Progress = _quiet) -> list[Running]:
        """Start the whole stack or nothing: on any failure everything started is stopped."""
        self.preflight(stack)
        for stale in self._pidfiles():
            stale.unlink(missing_ok=True)
        try:
            for task in stack.setup:
                self.run_task(task, progress)
            for proc in stack.processes:
                self._spawn(proc, progress)
                self._wait_ready(proc, progress)
            dead = [r for r in self.running() if not r.alive]
            if dead:
                raise NeverReady(
                    f"{dead[0].name} exited while the stack started; last lines of {dead[0].log}:\n"
                    + _tail(Path(dead[0].log))
                )
        except BaseException:
            self.stop(progress=progress)
            raise
        (self.run_dir / "stack.json").write_text(json.dumps(stack.describe(), indent=2))
        return self.running()

    def start_more(self, proc: Process, progress: Progress = _quiet) -> None:
        """Add one process to a running stack (e.g. a CDC stream once the data is there)."""
        if any(r.name == proc.name and r.alive for r in self.running()):
            raise StackError(f"{proc.name} is already running")
        if not _binary_found(proc.argv[0]):
            raise MissingBinary(f"{proc.name}: `{proc.argv[0]}` is not installed or not on PATH")
        if proc.port is not None and not port_free(proc.port, proc.host):
            raise PortInUse(f"{proc.name}: port {proc.port} on {proc.host} is already in use")
        self._spawn(proc, progress)
        try:
            self._wait_ready(proc, progress)
        except BaseException:
            child = self._children.pop(proc.name, None)
            if child is not None and child.poll() is None:
                self._terminate(Running(proc.name, child.pid, proc.port, None, "", 0.0, True), 5.0)
            (self.run_dir / f"{proc.name}.json").unlink(missing_ok=True)
            raise

    @staticmethod
    def _env(extra: Mapping[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(dict(extra))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, proc: Process, progress: Progress) -> None:
        log = self.log_path(proc.name)
        progress(f"starting {proc.name}" + (f" on {proc.host}:{proc.port}" if proc.port else ""))
        with log.open("ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(proc.argv)}\n".encode())
            out.flush()
            try:
                child = subprocess.Popen(
                    list(proc.argv), env=self._env(proc.env), cwd=proc.cwd,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise MissingBinary(f"{proc.name}: cannot run `{proc.argv[0]}`: {exc}") from exc
        info = {
            "name": proc.name, "pid": child.pid, "start_time": _proc_start_time(child.pid),
            "port": proc.port, "url": proc.base_url, "log": str(log), "started_at": time.time(),
            "argv": list(proc.argv),
        }
        tmp = self.run_dir / f".{proc.name}.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.run_dir / f"{proc.name}.json")
        self._children[proc.name] = child

    def _wait_ready(self, proc: Process, progress: Progress) -> None:
        child = self._children[proc.name]
        log = self.log_path(proc.name)
        started = time.monotonic()
        deadline = started + proc.ready_timeout
        while True:
            code = child.poll()
            if code is not None:
                raise NeverReady(
                    f"{proc.name} exited with code {code} before it was ready; "
                    f"last lines of {log}:\n{_tail(log)}"
                )
            if proc.ready_url is None:
                # nothing to probe: alive for a moment counts as started
                if time.monotonic() > started + proc.settle:
                    progress(f"{proc.name} running (pid {child.pid})")
                    return
            elif http_ready(proc.ready_url):
                progress(f"{proc.name} ready at {proc.base_url}")
                return
            if time.monotonic() > deadline:
                raise NeverReady(
                    f"{proc.name} did not become ready at {proc.ready_url} within "
                    f"{proc.ready_timeout:.0f}s; last lines of {log}:\n{_tail(log)}"
                )
            time.sleep(0.1)

    # -- stop -------------------------------------------------------------------------

    def stop(self, *, timeout: float = 10.0, progress: Progress = _quiet) -> list[str]:
        """Stop every process with a pid file, newest first: SIGTERM, then SIGKILL."""
        stopped = []
        for run in reversed(self.running()):
            if run.alive:
                self._terminate(run, timeout)
                progress(f"stopped {run.name} (pid {run.pid})")
                stopped.append(run.name)
            (self.run_dir / f"{run.name}.json").unlink(missing_ok=True)
            child = self._children.pop(run.name, None)
            if child is not None:
                with contextlib.suppress(Exception):
                    child.wait(timeout=1)
        (self.run_dir / "stack.json").unlink(missing_ok=True)
        return stopped

    def _terminate(self, run: Running, timeout: float) -> None:
        # each process leads its own session: signal the whole group (workers included)
        def signal_group(sig: int) -> None:
            try:
                os.killpg(run.pid, sig)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(run.pid, sig)

        signal_group(signal.SIGTERM)
        child = self._children.get(run.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                break
            if child is None and not pid_alive(run.pid):
                break
            time.sleep(0.05)
        else:
            signal_group(signal.SIGKILL)
        # workers of the group may outlive their parent for a moment
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signal.SIGKILL)


def http_ready(url: str) -> bool:
    """Whether `url` answers with a status below 500 (the server is up and serving)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False
