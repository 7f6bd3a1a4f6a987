"""A simulated router and a fake clock for the controller tests (no process, no sleep)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rollout.controller import Controller, Store, new_rollout
from rollout.gate import Gate, Snapshot, cumulative
from rollout.spec import RolloutSpec, Step, Webhook, steps_from_flag

BOUNDS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, math.inf)


class FakeRouter:
    """`rps` requests a second split by weight; the candidate fails at `fail_rate` and
    answers in `cand_ms`, the current backend in 2 ms."""

    def __init__(self, *, rps: int = 100, fail_rate: float = 0.0, cand_ms: float = 2.0) -> None:
        self.weights = {"monolith": 100, "catalog": 0}
        self.counts: dict[str, list[Any]] = {b: [0, 0, [0] * len(BOUNDS)] for b in self.weights}
        self.rps, self.fail_rate, self.cand_ms = rps, fail_rate, cand_ms
        self.changes: list[tuple[int, str]] = []
        self.down = False
        self.header_routes: dict[str, dict[str, str]] = {}  # what the router would serve
        self.shadow: dict[str, Any] | None = None
        self.route_changes: list[str] = []  # "set testers", "clear mirror", ...
        self.routes_down = False  # route changes fail, weights still move

    def advance(self, seconds: float) -> None:
        for b, w in self.weights.items():
            n = round(self.rps * seconds * w / 100)
            c = self.counts[b]
            c[0] += n
            if b == "catalog":
                c[1] += round(n * self.fail_rate)
            ms = self.cand_ms if b == "catalog" else 2.0
            c[2][next(i for i, bound in enumerate(BOUNDS) if ms <= bound)] += n

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Snapshot]]:
        if self.down:
            raise ConnectionError("router restarting")
        return dict(self.weights), {
            b: Snapshot(c[0], c[1], cumulative(list(zip(BOUNDS, c[2], strict=True))))
            for b, c in self.counts.items()}

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]:
        self.weights = {"monolith": 100 - weight, "catalog": weight}
        self.changes.append((weight, reason))
        return dict(self.weights)


    def shadow_of(self, route: str) -> dict[str, Any] | None:
        return None if self.shadow is None else {k: self.shadow[k] for k in ("to", "percent", "methods")
                                                 if k in self.shadow}

    def set_header_route(self, route: str, rule: dict[str, str], reason: str) -> None:
        self._check()
        self.header_routes[rule["name"]] = rule
        self.route_changes.append(f"set {rule['name']}")

    def clear_header_route(self, route: str, name: str, reason: str) -> None:
        self._check()
        self.header_routes.pop(name, None)
        self.route_changes.append(f"clear {name}")

    def set_mirror(self, route: str, mirror: dict[str, Any], reason: str) -> None:
        self._check()
        self.shadow = mirror
        self.route_changes.append("set mirror")

    def clear_mirror(self, route: str, reason: str) -> None:
        self._check()
        self.shadow = None
        self.route_changes.append("clear mirror")

    def _check(self) -> None:
        if self.down or self.routes_down:
            raise ConnectionError("router restarting")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def spec(steps: str = "10,50,100", *, interval: float = 10.0, min_requests: int = 20, threshold: int = 2,
         webhooks: tuple[Webhook, ...] = (), extra: tuple[Step, ...] = (), **gate: Any) -> RolloutSpec:
    return RolloutSpec(route="products", candidate="catalog",
                       steps=steps_from_flag(steps, interval=interval) + extra,
                       gate=Gate(min_requests=min_requests, **gate), threshold=threshold,
                       webhooks=webhooks, reason="test")


class Rig:
    """A rollout file in `folder`, a controller over a FakeRouter, time advanced by hand."""

    def __init__(self, folder: Path, s: RolloutSpec, router: FakeRouter | None = None, **kw: Any) -> None:
        self.router = router or FakeRouter()
        self.clock = Clock()
        self.store = Store(folder, s.route, ledger=folder / "ledger.jsonl")
        self.store.save(new_rollout(s, actor="tester", now=self.clock()))
        self.lines: list[str] = []
        self.kw = kw
        self.controller = self.new_controller()

    def new_controller(self) -> Controller:
        """What a restarted controller process builds: nothing but the file is carried over."""
        return Controller(self.store, self.router, actor="tester (controller)", clock=self.clock,
                          say=self.lines.append, **self.kw)

    def step(self, seconds: float = 1.0) -> dict[str, Any]:
        self.clock.t += seconds
        self.router.advance(seconds)
        return self.controller.tick()

    def run(self, *, until: tuple[str, ...] = ("promoted", "rolled_back", "aborted", "failed", "paused"),
            limit: int = 2000) -> dict[str, Any]:
        doc = self.controller.tick()
        for _ in range(limit):
            if doc["state"] in until:
                return doc
            doc = self.step()
        raise AssertionError(f"still {doc['state']} at step {doc['step']} after {limit} polls")

    def ledger(self) -> list[dict[str, Any]]:
        import json

        assert self.store.ledger_path is not None
        return [json.loads(line) for line in self.store.ledger_path.read_text().splitlines()]
