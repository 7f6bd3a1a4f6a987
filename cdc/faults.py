"""Fault points: named places in the CDC flow where a test crashes, fails or pauses the engine.

Off by default: ``point(name)`` is then one ``is None`` check, and points sit once per batch,
transaction, chunk or capture loop, never per row. A test turns them on for a real
``strangler cdc run`` process with the environment (or in-process with ``enable``/``enabled``):

    STRANGLER_CDC_FAULTS="sink.after_commit=exit@3;snapshot.after_chunk_read=pause"
    STRANGLER_CDC_FAULTS_DIR=/tmp/x      where pause and count talk to the test

Each entry is ``point=action[@N]``; the action fires once, on the N-th hit (default 1):

    exit    os._exit(FAULT_EXIT): a kill -9 at exactly that point (no cleanup, no flush)
    raise   raise InjectedFault (a CDCError): the in-process way to fail there
    pause   write <dir>/<point>.hit, then block until the test writes <dir>/<point>.go
            (``wait_hit``/``release``); after PAUSE_LIMIT seconds raise InjectedFault
    count   on every hit write the number of hits so far to <dir>/<point>.count (``hits``)

The points and the guarantee each one sits on:

    source.after_slot_created   the slot and its exported snapshot exist; the copy has not
                                imported the snapshot yet (gap-free start)
    snapshot.after_chunk_read   DBLog: a chunk was selected, its high watermark not emitted yet
    snapshot.after_chunk_published
                                initial copy by events: a chunk was handed to the transport
                                (apart: and is in it, its progress recorded); the next not read
    snapshot.after_copy_chunk   initial copy by COPY: a chunk is committed with its progress,
                                the next not read yet (a crash resumes after it)
    apply.before_write          the applier holds a batch, not written yet (inside the open
                                target transaction when a large one streams in parts)
    sink.before_commit          a batch's rows and positions are written, not committed
    sink.after_commit           the target committed rows and positions; nothing acknowledged
    capture.after_acknowledge   the capture loop has just acknowledged what is durable
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cdc.errors import CDCError, ConfigError

ENV, ENV_DIR = "STRANGLER_CDC_FAULTS", "STRANGLER_CDC_FAULTS_DIR"
ACTIONS = ("exit", "raise", "pause", "count")
FAULT_EXIT = 99
PAUSE_LIMIT = 120.0


class InjectedFault(CDCError):
    """Raised by a ``raise`` fault point (or a pause nobody released)."""


@dataclass
class Fault:
    action: str
    nth: int = 1
    hits: int = 0


_faults: dict[str, Fault] | None = None
_dir = Path(".")


def parse(spec: str) -> dict[str, Fault]:
    out: dict[str, Fault] = {}
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        name, _, rest = entry.partition("=")
        action, _, nth = rest.partition("@")
        if not name or action not in ACTIONS or not (nth or "1").isdigit() or int(nth or 1) < 1:
            raise ConfigError(ENV, f"bad entry {entry!r}: write point=action[@N] with action one "
                                   f"of {', '.join(ACTIONS)} and N >= 1")
        out[name.strip()] = Fault(action, int(nth or 1))
    return out


def enable(spec: str, directory: str | Path | None = None) -> None:
    global _faults, _dir
    faults = parse(spec)
    if directory is None and any(f.action in ("pause", "count") for f in faults.values()):
        raise ConfigError(ENV_DIR, "pause and count need a directory to talk to the test through")
    _faults, _dir = faults or None, Path(directory or ".")


def disable() -> None:
    global _faults
    _faults = None


@contextmanager
def enabled(spec: str, directory: str | Path | None = None) -> Iterator[None]:
    enable(spec, directory)
    try:
        yield
    finally:
        disable()


def point(name: str) -> None:
    """A fault point; does nothing unless a fault is enabled for `name`."""
    if _faults is None:
        return
    fault = _faults.get(name)
    if fault is not None:
        _fire(name, fault)


def _fire(name: str, fault: Fault) -> None:
    fault.hits += 1
    if fault.action == "count":
        _write(f"{name}.count", str(fault.hits))
    if fault.hits != fault.nth or fault.action == "count":
        return
    if fault.action == "exit":
        os.write(sys.stderr.fileno(), f"fault point {name}: exit {FAULT_EXIT}\n".encode())
        os._exit(FAULT_EXIT)
    if fault.action == "raise":
        raise InjectedFault(f"fault point {name} (hit {fault.hits}): injected failure")
    _write(f"{name}.hit", str(fault.hits))
    deadline = time.monotonic() + PAUSE_LIMIT
    while not (_dir / f"{name}.go").exists():
        if time.monotonic() > deadline:
            raise InjectedFault(f"fault point {name}: paused {PAUSE_LIMIT:.0f} s, never released")
        time.sleep(0.005)


def _write(file: str, text: str) -> None:
    tmp = _dir / f".{file}.tmp"
    tmp.write_text(text)
    os.replace(tmp, _dir / file)  # readers never see a half-written file


# -- the test's side of the file protocol ------------------------------------------------
def wait_hit(directory: str | Path, name: str, timeout: float = 60.0) -> None:
    """Block until the pause at `name` is reached."""
    deadline = time.monotonic() + timeout
    while not (Path(directory) / f"{name}.hit").exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"fault point {name} not reached within {timeout:.0f} s")
        time.sleep(0.005)


def release(directory: str | Path, name: str) -> None:
    (Path(directory) / f"{name}.go").write_text("")


def hits(directory: str | Path, name: str) -> int:
    """How often a ``count`` point was hit so far."""
    path = Path(directory) / f"{name}.count"
    return int(path.read_text()) if path.exists() else 0


if os.environ.get(ENV):
    enable(os.environ[ENV], os.environ.get(ENV_DIR))
