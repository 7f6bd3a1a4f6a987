"""Moved to `rollout.canary` (issue 19's layout); this name stays for cli/demo.py and the tests
that import it (`run_canary`, `CanaryPlan`, `CanaryResult`, `Control`, `Board`)."""

from rollout.canary import Board, CanaryPlan, CanaryResult, Control, StepRecord, run_canary

__all__ = ["Board", "CanaryPlan", "CanaryResult", "Control", "StepRecord", "run_canary"]
