"""The child processes devstack starts (the broker, Debezium, Kafka Connect, Zipkin): tied to
the test run's life, and stopped the same way."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess


def die_with_parent() -> None:
    """Child side (`preexec_fn`): a server left behind by a killed test run would hold memory
    forever, so the kernel kills it with its parent; its own session keeps it off the
    terminal's signals."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()


def stop_process(proc: subprocess.Popen[bytes] | None, *, hard: bool = False, timeout: float = 30) -> None:
    """SIGTERM (SIGKILL when `hard`) and wait; SIGKILL if it outlives `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
