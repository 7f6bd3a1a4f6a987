"""The read cut-over gate of `shift` and `canary`: reads may move to a copy only while it is current.

Raising a route's weight toward backend X sends reads to X's database. If X is a side of an
ownership group that it does not own, that database is a copy fed by the owner's out-stream
(the group's other side's `stream`): the raise is refused while that stream is not running,
is behind by more than --max-lag, or its last `strangler verify` found differences. Lowering
a weight is never gated, nor is a raise toward the owner. `--force --reason` overrides; the
override is ledgered. No ownership file (or no streams.yaml): nothing to gate.
"""

from __future__ import annotations

from pathlib import Path

from control.errors import ControlError, GateClosed
from control.ledger import append_entry
from control.streamcheck import lag_problem, verify_problem


def feeding_streams(backend: str, streams: str | None) -> list[str]:
    """The streams whose copy backend `backend` reads (it is a non-owner side)."""
    import ownership
    from cdc import config
    from cdc.errors import ConfigError

    try:
        sf = config.load(streams)
    except ConfigError:
        return []
    if not Path(sf.ownership_path).exists():
        return []
    try:
        doc = ownership.load(sf.ownership_path)
    except ownership.OwnershipError as exc:
        raise ControlError(str(exc)) from exc
    return [g.other(backend).stream for g in doc.groups.values()
            if backend in g.sides and g.owner != backend]


def problems(backend: str, *, streams: str | None, max_lag: float) -> list[str]:
    found = []
    for stream in feeding_streams(backend, streams):
        found += [p for p in (lag_problem(stream, max_lag), verify_problem(stream)) if p]
    return found


def check_raise(*, route: str, backend: str, old: int | None, new: int, streams: str | None,
                max_lag: float, force: bool, reason: str, actor: str, ledger: Path) -> None:
    """Refuse (GateClosed) raising `route`'s weight of `backend` from `old` to `new` while its
    copy is behind or differs; with `force`, let it through and ledger the override."""
    if old is not None and new <= old:
        return
    found = problems(backend, streams=streams, max_lag=max_lag)
    if not found:
        return
    if not force:
        raise GateClosed(f"not raising {route} toward {backend}: its reads would come from a copy "
                         f"that is not current: {'; '.join(found)}. To go ahead anyway: "
                         "--force --reason \"...\" (ledgered)")
    if not reason.strip():
        raise ControlError("--force needs --reason TEXT: the override goes into the ledger")
    append_entry(ledger, {"kind": "gate-override", "route": route, "backend": backend,
                          "gate": "; ".join(found), "reason": reason, "actor": actor,
                          "weight": {"from": old, "to": new}})
