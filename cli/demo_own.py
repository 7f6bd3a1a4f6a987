"""Moved to `walkthrough.ownflow` (the walkthrough engine); kept for old imports (benchmarks/own.py)."""

from walkthrough.ownflow import enforce, move_writes, prove_write, write_ownership

__all__ = ["enforce", "move_writes", "prove_write", "write_ownership"]
