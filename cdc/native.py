"""Which implementation of the stream's per-row loops runs: compiled or pure Python.

`cdc._speedups` (cdc/_speedups.c) is built by `pip install` where a C compiler is (setup.py,
optional); the pure-Python versions beside their callers (`pgoutput.tuple_data_py`,
`sqlalchemy.map_row_py`, `pgbulk.copy_text_py`, the Kafka capture's `kafka_envelope.json_*_py`)
run wherever it did not build, and when ``STRANGLER_PURE_PYTHON=1``
asks for them. Both give the same results (tests/cdc/test_speedups.py).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["speedups", "why_pure"]


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("STRANGLER_PURE_PYTHON", "") not in ("", "0"):
        return None, "STRANGLER_PURE_PYTHON is set"
    try:
        from cdc import _speedups
    except ImportError as exc:
        return None, (f"cdc._speedups is not built ({exc}); install a C compiler and Python's "
                      "headers (Debian: apt-get install gcc python3-dev) and reinstall (`make test`)")
    return _speedups, ""


speedups, why_pure = _load()
