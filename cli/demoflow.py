"""Moved to `walkthrough.flow` (the walkthrough engine); kept for old imports (tests/cli/test_e2e.py, benchmarks)."""

from walkthrough.flow import (
    PRODUCTS,
    SplitSampler,
    Traffic,
    demo_routes,
    set_shadow,
    traffic_totals,
    write_yaml,
)

__all__ = ["PRODUCTS", "SplitSampler", "Traffic", "demo_routes", "set_shadow", "traffic_totals", "write_yaml"]
