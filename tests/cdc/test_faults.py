"""cdc/faults.py: parsing, the N-th hit, raise, count, and the pause/release handshake."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cdc import faults
from cdc.errors import ConfigError


def test_off_by_default_and_bad_specs_are_refused() -> None:
    faults.point("sink.after_commit")  # nothing enabled: a no-op
    for bad in ("sink.after_commit", "x=explode", "x=exit@0", "x=pause@two", "=exit"):
        with pytest.raises(ConfigError, match="point=action"):
            faults.parse(bad)
    with pytest.raises(ConfigError, match="directory"):
        faults.enable("x=pause")


def test_raise_fires_once_on_the_nth_hit_and_count_counts_every_hit(tmp_path: Path) -> None:
    with faults.enabled("a=raise@3; b=count", tmp_path):
        for _ in range(2):
            faults.point("a")
            faults.point("b")
        with pytest.raises(faults.InjectedFault, match="a"):
            faults.point("a")
        faults.point("a")  # fired once; the 4th hit passes
        assert faults.hits(tmp_path, "b") == 2
    faults.point("a")  # disabled again


def test_pause_blocks_until_released(tmp_path: Path) -> None:
    passed = threading.Event()

    def worker() -> None:
        faults.point("p")
        passed.set()

    with faults.enabled("p=pause", tmp_path):
        th = threading.Thread(target=worker)
        th.start()
        faults.wait_hit(tmp_path, "p", timeout=10)
        assert not passed.is_set()
        faults.release(tmp_path, "p")
        th.join(10)
    assert passed.is_set()
