"""The databases enforce what ownership.yaml says now: the non-owner side refuses application
writes (cdc/guard.py), from a fresh stack's start, not only after a first flip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ownership
from handover.errors import HandoverError


def enforce(streams: Any, g: ownership.Group) -> dict[str, dict[str, str]]:
    """Make both databases enforce what ownership.yaml says now (idempotent).

    `strangler up` and the demo call this once the schemas exist, and `own --by <owner>`
    does it when there is nothing to flip: a fresh stack's non-owner side is guarded from
    the start, not only after a first flip.
    """
    from cdc.errors import CDCError
    from cdc.guard import apply_guards

    urls = {side: str(streams.stream(s.stream).source_url) for side, s in g.sides.items()}
    try:
        return {side: apply_guards(url, g, side) for side, url in urls.items()}
    except CDCError as exc:
        raise HandoverError(f"cannot make the databases enforce ownership of {g.name}: {exc}") from None


def enforce_declared(streams: Path, env: dict[str, str]) -> dict[str, Any]:
    """`enforce` every ownership group of a stack whose streams see `env` (for `up`, the demo).

    Returns {} when the stack declares no ownership (no file): nothing to enforce.
    """
    from cdc import config

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        sf = config.load(streams)
        if not Path(sf.ownership_path).exists():
            return {}
        doc = ownership.load(sf.ownership_path)
        return {name: enforce(sf, g) for name, g in doc.groups.items()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
