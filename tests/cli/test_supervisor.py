"""The supervisor behind `up/down/ps/logs`, driven with small real processes on loopback."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from devstack import free_port
from stack.errors import AlreadyRunning, MissingBinary, NeverReady, PortInUse
from stack.model import Process, Stack, Task
from stack.supervisor import Supervisor, pid_alive

PY = sys.executable


def http_server(name: str, port: int) -> Process:
    return Process(
        name=name, port=port, ready_path="/",
        argv=(PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
    )


@pytest.fixture
def sup(tmp_path: Path):
    s = Supervisor(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    yield s
    s.stop(timeout=3)


def test_start_ps_logs_and_stop_leave_nothing_running(sup: Supervisor, tmp_path: Path) -> None:
    p1, p2 = free_port(), free_port()
    marker = tmp_path / "setup-ran"
    stack = Stack(mode="test", processes=(http_server("one", p1), http_server("two", p2)),
                  setup=(Task(name="prepare", argv=(PY, "-c", f"open({str(marker)!r}, 'w')")),))
    lines: list[str] = []
    started = sup.start(stack, progress=lines.append)
    assert marker.exists()
    assert [r.name for r in started] == ["one", "two"]
    assert all(r.alive for r in started)
    assert any("one ready at http://127.0.0.1:" in line for line in lines)
    with socket.create_connection(("127.0.0.1", p2), timeout=2):
        pass
    # a second supervisor (another `strangler` invocation) sees the same processes
    other = Supervisor(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    assert [(r.name, r.pid) for r in other.running()] == [(r.name, r.pid) for r in started]
    assert other.log_path("one").exists()
    stopped = other.stop(timeout=3)
    assert stopped == ["two", "one"]
    for r in started:
        assert not pid_alive(r.pid)
    assert other.running() == []
    assert _port_free(p1) and _port_free(p2)


def test_port_in_use_names_port_and_process_and_starts_nothing(sup: Supervisor) -> None:
    p1 = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        stack = Stack(mode="test", processes=(http_server("first", p1), http_server("second", taken)))
        with pytest.raises(PortInUse, match=rf"second: port {taken} .*already in use"):
            sup.start(stack)
    assert sup.running() == []
    assert _port_free(p1)


def test_missing_binary_is_named(sup: Supervisor) -> None:
    stack = Stack(mode="test", processes=(
        http_server("ok", free_port()),
        Process(name="ghost", argv=("/nonexistent/strangler-ghost", "--serve"), install_hint="apt-get install ghost"),
    ))
    with pytest.raises(MissingBinary, match=r"ghost: `/nonexistent/strangler-ghost` is not installed.*apt-get install ghost"):
        sup.start(stack)
    assert sup.running() == []


def test_never_ready_stops_what_was_started(sup: Supervisor) -> None:
    first = http_server("first", free_port())
    sleeper = Process(name="sleeper", port=free_port(), ready_path="/", ready_timeout=1.0,
                      argv=(PY, "-c", "import time; print('warming up', flush=True); time.sleep(60)"))
    t0 = time.monotonic()
    with pytest.raises(NeverReady, match=r"sleeper did not become ready .* within 1s(.|\n)*warming up"):
        sup.start(Stack(mode="test", processes=(first, sleeper)))
    assert time.monotonic() - t0 < 30
    assert sup.running() == []
    assert _port_free(first.port or 0)


def test_early_exit_reports_code_and_log(sup: Supervisor) -> None:
    crasher = Process(name="crasher", port=free_port(), ready_path="/",
                      argv=(PY, "-c", "import sys; print('bad config: x', file=sys.stderr); sys.exit(4)"))
    with pytest.raises(NeverReady, match=r"crasher exited with code 4(.|\n)*bad config: x"):
        sup.start(Stack(mode="test", processes=(crasher,)))
    assert sup.running() == []


def test_failed_setup_task_starts_nothing(sup: Supervisor) -> None:
    stack = Stack(mode="test", processes=(http_server("web", free_port()),),
                  setup=(Task(name="migrate", argv=(PY, "-c", "raise SystemExit('no such table')")),))
    with pytest.raises(Exception, match=r"migrate failed \(exit 1\)(.|\n)*no such table"):
        sup.start(stack)
    assert sup.running() == []


def test_second_up_refused_while_running(sup: Supervisor) -> None:
    sup.start(Stack(mode="test", processes=(http_server("web", free_port()),)))
    with pytest.raises(AlreadyRunning, match=r"web \(pid \d+\).*strangler down"):
        sup.start(Stack(mode="test", processes=(http_server("web2", free_port()),)))
    assert [r.name for r in sup.running()] == ["web"]


def test_stop_kills_process_that_ignores_sigterm(sup: Supervisor) -> None:
    stubborn = Process(name="stubborn", argv=(PY, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"))
    (run,) = sup.start(Stack(mode="test", processes=(stubborn,)))
    assert sup.stop(timeout=0.5) == ["stubborn"]
    assert not pid_alive(run.pid)


def test_stale_pidfile_of_dead_process_is_ignored(sup: Supervisor, tmp_path: Path) -> None:
    (run,) = sup.start(Stack(mode="test", processes=(http_server("web", free_port()),)))
    other = Supervisor(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    import os
    import signal
    os.killpg(run.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and other.running()[0].alive:
        time.sleep(0.05)
    assert other.running()[0].alive is False
    # a new start is allowed: the old entry is dead
    sup2 = Supervisor(run_dir=tmp_path / "run", log_dir=tmp_path / "logs")
    sup2.start(Stack(mode="test", processes=(http_server("web", free_port()),)))
    assert [r.alive for r in sup2.running()] == [True]
    sup2.stop(timeout=3)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_down_says_once_what_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("STRANGLER_STATE_DIR", str(tmp_path / "state"))
    sup = Supervisor(run_dir=tmp_path / "state" / "run", log_dir=tmp_path / "state" / "logs")
    sup.start(Stack(mode="test", processes=(
        Process(name="sleeper", argv=(PY, "-c", "import time; time.sleep(60)"), settle=0.2),)))
    result = CliRunner().invoke(app, ["down"])
    assert result.exit_code == 0
    assert result.output.count("sleeper") == 1 and "stopped: sleeper" in result.stdout
