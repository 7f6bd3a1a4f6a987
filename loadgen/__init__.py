"""The traffic generator: virtual visitors, customers and staff driving the shop at a rate.

    engine.py   the users, the action mix and the open-loop driver (`run_traffic`)
    report.py   what a run measured: per-endpoint counts, latencies, failures, the summary

It imports nothing of `cli`: `cli/traffic.py` is the command in front of it.
"""

from loadgen.engine import TrafficConfig, TrafficError, run_traffic

__all__ = ["TrafficConfig", "TrafficError", "run_traffic"]
