"""Moved to `rollout.gate` (issue 19's layout); this name stays for the modules that import it."""

from rollout.gate import *  # noqa: F403
from rollout.gate import (  # noqa: F401
    INF,
    Check,
    Gate,
    Snapshot,
    Verdict,
    Window,
    check,
    cumulative,
    judge,
    merge,
    parse_duration,
    parse_rate,
    parse_steps,
    window,
)
