"""The seven steps, live: what each does (`act_N`) and what it observes for its checks (`check_N`).

A `Walk` holds everything started for one run in `.strangler/walkthrough/`: the stack
(monolith, catalog, router; later the CDC streams, a drill copy of the catalog, the retired
monolith), the traffic generator, the split sampler, where spans go (the span receiver, or
with `--real` Zipkin), the probe, the CDC lag watch, and with `--real` the PostgreSQL, Kafka
and Zipkin of `stack.realstack` the databases and streams live on. `act_N` changes the system as migrations/NN-*.yaml says; `check_N` reads
the state back and judges it with `walkthrough.checks` and the file's parameters, so a user
who did the act by hand is checked the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from control.errors import ControlError, StackError
from control.routerapi import RouterAPI, route_entry, snapshots, weights
from control.routercontrol import RouterControl
from devstack import free_port
from migrations import Step
from rollout.canary import CanaryPlan, run_canary
from rollout.gate import Gate
from router.balance import BUCKETS, bucket
from stack.model import Process, Stack, StackSettings, stream_process
from stack.realstack import RealServices
from stack.supervisor import Supervisor, pid_alive
from walkthrough import checks
from walkthrough.checks import Result
from walkthrough.flow import (
    DRILL,
    DRILL_HEADER,
    OVERRIDE_HEADER,
    PRODUCTS,
    SplitSampler,
    Traffic,
    in_flight,
    set_shadow,
    write_yaml,
)
from walkthrough.ownflow import enforce, move_writes, prove_write
from walkthrough.spans import Spans

REPO = Path(__file__).resolve().parent.parent
HOST = "walkthrough.local"  # one Host for both sides of a comparison: links must not differ by port


@dataclass(frozen=True, kw_only=True)
class Plan:
    rate: float = 20.0
    shadow_seconds: float = 6.0
    steps: tuple[int, ...] = (10, 50, 100)
    interval: float = 6.0
    min_requests: int = 20
    probe_rate: float = 8.0  # the walkthrough's own cohort reads (half land on the first step)
    window: float = 8.0  # step 7's zero-traffic window
    settle: float = 3.0
    seed: str = "small"
    cdc_timeout: float = 120.0
    real: bool = False

    @classmethod
    def quick(cls, **kw: Any) -> Plan:
        return cls(**{**{"rate": 15.0, "shadow_seconds": 5.0, "steps": (50, 100), "interval": 5.0,
                         "min_requests": 10, "probe_rate": 8.0, "window": 4.0, "settle": 1.0}, **kw})


# what a CDC stream process of the walkthrough gets: its databases, the ownership file and,
# with --real, the streams file (on Kafka a copy of streams.yaml with `transport: kafka`)
STREAM_ENV = ("STRANGLER_STATE_DIR", "MONOLITH_DATABASE_URL", "MONOLITH_SQLITE_PATH", "CATALOG_DATABASE_URL",
              "STRANGLER_OWNERSHIP", "STRANGLER_STREAMS")


def cdc_process(walk: Walk, stream: str) -> Process:
    return Process(name=stream_process(stream), role="stream", cwd=str(REPO),
                   env={k: walk.env[k] for k in STREAM_ENV if k in walk.env},
                   argv=(sys.executable, "-m", "cli.main", "cdc", "run", stream))


class Probe:
    """Product reads from fixed cohorts (session cookies), chosen with the router's own hash
    so that half of them land on the candidate at the canary's first step: the gate's
    request minimum is reached in seconds, whatever cohorts the traffic generator made."""

    def __init__(self, base_url: str, *, salt: str, first_weight: int, rate: float,
                 headers: Mapping[str, str] | None = None, n: int = 24) -> None:
        edge = BUCKETS - first_weight * BUCKETS // 100  # the candidate's first slice: [edge, BUCKETS)
        inside: list[str] = []
        outside: list[str] = []
        i = 0
        while len(inside) < n // 2 or len(outside) < n // 2:
            key = f"walkthrough-probe-{i}"
            (inside if bucket(salt, key) >= edge else outside).append(key)
            i += 1
        self.keys = inside[: n // 2] + outside[: n // 2]
        self.base_url, self.rate, self.headers = base_url, rate, dict(headers or {})
        self.sent = self.failed = 0
        self.failures: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10, headers=self.headers) as client:
            i = 0
            while not self._stop.is_set():
                key = self.keys[i % len(self.keys)]
                i += 1
                try:
                    answer = client.get("/api/products/", params={"page": str(1 + i % 3)},
                                        cookies={"sessionid": key})
                    bad = answer.status_code >= 400
                    why = f"{answer.status_code} {answer.text[:120]}"
                except httpx.HTTPError as exc:
                    bad, why = True, repr(exc)
                self.sent += 1
                if bad:
                    self.failed += 1
                    if len(self.failures) < 20:
                        self.failures.append({"probe": key, "why": why})
                self._stop.wait(1.0 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


class LagWatch:
    """The peak CDC lag of each stream, from its metrics file, while the walkthrough runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for path in self.folder.glob("*.json"):
                stream, _, half = path.stem.partition(".")
                if half not in ("", "apply"):  # over Kafka the apply half's lag is end to end
                    continue
                with contextlib.suppress(OSError, ValueError, TypeError):
                    lag = float(json.loads(path.read_text()).get("lag_ms") or 0)
                    self.peaks[stream] = max(self.peaks.get(stream, 0.0), lag)

    def start(self) -> LagWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Walk:
    plan: Plan
    home: Path
    settings: StackSettings
    stack: Stack
    sup: Supervisor
    env: dict[str, str]
    say: Callable[[str], None]
    api: RouterAPI | None = None
    traffic: Traffic | None = None
    sampler: SplitSampler | None = None
    receiver: Spans | None = None
    lag: LagWatch | None = None
    probes: list[Probe] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # what acts leave for checks and the report
    services: RealServices | None = None  # --real: PostgreSQL, Kafka, Zipkin

    @property
    def transport(self) -> str:
        return self.services.transport if self.services is not None else "direct"

    @property
    def streams_file(self) -> Path:
        return Path(self.env.get("STRANGLER_STREAMS") or REPO / "streams.yaml")

    @property
    def routes(self) -> Path:
        return self.settings.routes

    @property
    def router_url(self) -> str:
        return self.stack.router_url or ""

    def url(self, name: str) -> str:
        return self.stack.process(name).base_url or ""

    def router(self) -> RouterAPI:
        if self.api is None:
            raise StackError("the router is not running yet: run the walkthrough from step 2 (or --step 2)")
        return self.api

    def stop(self) -> None:
        for probe in self.probes:
            probe.stop()
        if self.traffic is not None and self.traffic.alive():
            with contextlib.suppress(ControlError):
                self.facts["traffic"] = self.traffic.stop(timeout=10)
        if self.sampler is not None:
            self.sampler.stop()
        if self.lag is not None:
            self.lag.stop()
        if self.receiver is not None:
            self.receiver.stop()
        self.sup.stop()
        if self.services is not None:  # the databases last: the processes using them are gone
            self.services.stop()


# -- helpers ----------------------------------------------------------------------------------

def _metrics(walk: Walk, stream: str) -> dict[str, Any]:
    """The stream's metrics file; over Kafka its apply half's (the lag end to end), as
    `cli.streamcheck.live` reads them."""
    for name in (stream, f"{stream}.apply"):
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads((walk.home / "cdc" / f"{name}.json").read_text()))
    return {}


def wait_caught_up(walk: Walk, stream: str) -> dict[str, Any]:
    """Until the stream streams with its snapshot done and a small lag (its metrics file)."""
    deadline = time.monotonic() + walk.plan.cdc_timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        dead = [r for r in walk.sup.running() if r.name == stream_process(stream) and not r.alive]
        if dead:
            raise StackError(f"the CDC stream {stream} stopped; its log: {dead[0].log}")
        doc = _metrics(walk, stream)
        if doc.get("state") == "failed":
            raise StackError(f"the CDC stream {stream} failed: {doc.get('error')}")
        walk.say(f"{stream}: {doc.get('state', 'starting')}, {doc.get('events', 0)} events, "
                 f"lag {float(doc.get('lag_ms') or 0):.0f} ms")
        if doc.get("state") == "streaming" and float(doc.get("lag_ms") or 0) < 2000 \
                and time.time() - float(doc.get("updated") or 0) < 5 \
                and (walk.transport != "kafka" or applied_now(walk, stream, deadline)):
            return doc
        time.sleep(0.3)
    raise StackError(f"the CDC stream {stream} did not catch up in {walk.plan.cdc_timeout:.0f}s (last state: "
                     f"{doc.get('state', 'unknown')}); see {walk.home}/logs/{stream_process(stream)}.log")


def applied_now(walk: Walk, stream: str, deadline: float) -> bool:
    """Over Kafka the capture's metrics say nothing of the apply half: a marker through the
    stream (`cdc.drain`) is applied, and the first copy is done, by `deadline`."""
    from cdc import config, drain

    saved = dict(os.environ)
    os.environ.update(walk.env)  # the streams file names its databases through ${VAR}s
    try:
        cfg = config.load(walk.streams_file).stream(stream)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if not drain.wait_applied_to(cfg, drain.mark(cfg), timeout=max(0.0, deadline - time.monotonic()), poll=0.2):
        return False
    return cfg.initial == "none" or drain.snapshot_done(cfg, [m.source for m in cfg.tables])


def verify(walk: Walk, stream: str) -> tuple[int, dict[str, Any]]:
    """`strangler verify STREAM --json`: (differing rows, its document)."""
    proc = subprocess.run([sys.executable, "-m", "cli.main", "verify", stream, "--json"], cwd=str(REPO),
                          env=walk.env, capture_output=True, text=True, timeout=300, check=False)
    try:
        doc = dict(json.loads(proc.stdout))
    except ValueError:
        raise StackError(f"`strangler verify {stream}` failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-500:]}") from None
    differing = sum(len(t.get("missing") or []) + len(t.get("extra") or []) + len(t.get("different") or [])
                    for t in doc.get("tables") or [])
    if proc.returncode == 3 and differing == 0:
        differing = 1  # verify says unequal even if we could not count the rows
    return differing, doc


def _body(answer: httpx.Response, base: str) -> tuple[int, Any]:
    text = answer.text.replace(base, "{base}")
    try:
        return answer.status_code, json.loads(text)
    except ValueError:
        return answer.status_code, text


def _wait_live(walk: Walk, ready: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15.0) -> None:
    """Until the router's running table satisfies `ready` (it reloads the file by itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ControlError):
            if ready(walk.router().routes()):
                return
        time.sleep(0.2)
    raise StackError(f"the router did not load {what} within {timeout:.0f}s; see {walk.home}/logs/router.log")


def _edit_routes(walk: Walk, change: Callable[[dict[str, Any]], None], what: str) -> None:
    """Change the routes file and wait until the router runs the new table (its sha256)."""
    before = walk.router().routes().get("sha256")
    doc = yaml.safe_load(walk.routes.read_text())
    change(doc)
    write_yaml(walk.routes, doc)
    _wait_live(walk, lambda table: table.get("sha256") != before, what)


def _canary(walk: Walk, route: str, candidate: str, say: Callable[[str], None]) -> dict[str, Any]:
    plan = walk.plan
    cplan = CanaryPlan(route=route, candidate=candidate, steps=plan.steps, interval=plan.interval,
                       # a laptop running the whole stack is noisy: latency gates only on a
                       # p99 beyond half a second and 3× the monolith's
                       gate=Gate(max_error_rate=0.01, max_p99_ratio=3.0, min_requests=plan.min_requests,
                                 p99_floor_ms=500.0),
                       max_wait=max(6 * plan.interval, 60.0), poll=0.5)
    return run_canary(RouterControl(walk.router(), ledger=walk.home / "ledger.jsonl"), cplan, say=say).to_json()


def _run(step: Step, name: str, fn: Callable[..., Result], *args: Any) -> Result:
    check = next(c for c in step.checks if c.name == name)
    return fn(*args, **check.params)


# -- step 1: map ------------------------------------------------------------------------------

MAP_FALLBACK = """
import json, django
django.setup()
from django.apps import apps
out = {"project": "monolith", "source": "django app registry (contextmap missing)", "contexts": {},
       "imports": [], "foreign_keys": [], "coupling": [], "shared_writes": [],
       "cross_context_transactions": [], "signals": [], "tangles": []}
for cfg in apps.get_app_configs():
    if cfg.name.startswith("monolith."):
        out["contexts"][cfg.label] = {"apps": [cfg.label], "tables": sorted(m._meta.db_table for m in cfg.get_models())}
print(json.dumps(out))
"""


def build_map(settings_module: str) -> dict[str, Any]:
    """`contextmap.build_map` (helper "map"); without it, the contexts from Django's registry."""
    try:
        from contextmap import build_map as contextmap_build  # type: ignore[import-not-found]
    except ImportError:
        proc = subprocess.run([sys.executable, "-c", MAP_FALLBACK], cwd=str(REPO), capture_output=True, text=True,
                              env={**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}, timeout=120, check=False)
        if proc.returncode != 0:
            raise StackError(f"cannot read the contexts of {settings_module}: {proc.stderr.strip()[-400:]}") from None
        return dict(json.loads(proc.stdout))
    try:  # the map's own run: a GET to every URL on a throwaway database adds what pages read
        return dict(contextmap_build(settings_module, exercise=True))
    except TypeError:  # a build_map without `exercise`: the contract's form
        return dict(contextmap_build(settings_module))


def act_1(walk: Walk, step: Step) -> None:
    params = step.checks[0].params
    doc = build_map(str(params["settings"]))
    (walk.home / "map.json").write_text(json.dumps(doc, indent=2))


def check_1(walk: Walk, step: Step) -> list[Result]:
    path = walk.home / "map.json"
    if not path.exists():
        return [Result("map_matches_declared", False, f"no map at {path}: run `{step.act_yourself}`")]
    doc = json.loads(path.read_text())
    params = dict(step.checks[0].params)
    fallback = "contextmap missing" in str(doc.get("source", ""))
    if fallback:
        params.pop("shared_writes", None)  # the registry alone sees neither writers nor tangles
        params.pop("tangles", None)
    result = checks.map_matches_declared(doc, **params)
    if fallback:
        result = Result(result.name, result.ok, result.detail + " (contextmap not installed: tangles and shared "
                        "writes not checked)", result.figures)
    return [result]


# -- step 2: router in front ------------------------------------------------------------------

def act_2(walk: Walk, step: Step) -> None:
    walk.sup.start(walk.stack, progress=walk.say)
    walk.api = RouterAPI(walk.router_url, token=walk.settings.admin_token)
    walk.traffic = Traffic(base_url=walk.router_url, rate=walk.plan.rate, log=walk.home / "logs" / "traffic.log",
                           env=walk.env, pidfile=walk.home / "run" / "traffic.pid")
    walk.traffic.start()
    walk.sampler = SplitSampler(walk.router(), every=0.5)
    walk.sampler.start()
    walk.lag = LagWatch(walk.home / "cdc").start()


def golden_pairs(direct: str, routed: str, paths: list[str], tries: int = 5) -> list[tuple[str, Any, Any]]:
    """Each path asked direct, through the router, direct again; a pair counts once the two
    direct answers agree (traffic edits prices meanwhile: then it asks again)."""
    pairs = []
    with httpx.Client(timeout=10, headers={"Host": HOST}) as client:
        for path in paths:
            for _ in range(tries):
                a = _body(client.get(direct + path), direct)
                b = _body(client.get(routed + path), routed)
                c = _body(client.get(direct + path), direct)
                if a == c:
                    break
            pairs.append((path, a, b))
    return pairs


def latencies(direct: str, routed: str, path: str, n: int) -> tuple[list[float], list[float]]:
    """`n` timed requests each way, alternating one by one so both see the same load."""
    out: tuple[list[float], list[float]] = ([], [])
    with httpx.Client(timeout=10) as client:
        client.get(direct + path)
        client.get(routed + path)
        for _ in range(n):
            for i, base in enumerate((direct, routed)):
                t0 = time.perf_counter()
                client.get(base + path)
                out[i].append(1000 * (time.perf_counter() - t0))
    return out


def check_2(walk: Walk, step: Step) -> list[Result]:
    direct, routed = walk.url("monolith"), walk.router_url
    paths = [str(p) for p in next(c for c in step.checks if c.name == "golden_path_identical").params["paths"]]
    results = [_run(step, "golden_path_identical", checks.golden_path_identical, golden_pairs(direct, routed, paths))]
    lat = next(c for c in step.checks if c.name == "latency_within_budget").params
    d_ms, r_ms = latencies(direct, routed, str(lat["path"]), int(lat["samples"]))
    results.append(checks.latency_within_budget(d_ms, r_ms, max_added_ms=float(lat["max_added_ms"])))
    return results


# -- step 3: extract the catalog --------------------------------------------------------------

def load_contract(path: Path) -> types.ModuleType:
    """tests/extracted/catalog/contract.py; its hypothesis strategies are not needed here, so
    without hypothesis installed a stand-in takes their place."""
    import importlib.util

    stub = None
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        class Anything:
            def __getattr__(self, _: str) -> Anything:
                return self

            def __call__(self, *_: Any, **__: Any) -> Anything:
                return self

        stub = types.ModuleType("hypothesis")
        stub.strategies = Anything()  # type: ignore[attr-defined]
        sys.modules["hypothesis"] = stub
    try:
        spec = importlib.util.spec_from_file_location("walkthrough_contract", path)
        if spec is None or spec.loader is None:
            raise StackError(f"cannot load the contract tests at {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if stub is not None:
            sys.modules.pop("hypothesis", None)


def _all_rows(client: httpx.Client, path: str) -> dict[int, dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    page = 1
    while True:
        body = client.get(path, params={"page_size": "100", "page": str(page)}).json()
        rows.update({row["id"]: row for row in body["results"]})
        if not body.get("next"):
            return rows
        page += 1


def contract_live(monolith: str, catalog: str, contract_path: Path, *, tries: int = 5) -> tuple[list[str], int]:
    """The contract's fixed requests against the live monolith and the live catalog service.
    A difference is asked again (up to `tries`) after a moment: the traffic's price edits
    reach the catalog a CDC lag later."""
    contract = load_contract(contract_path)
    from extracted.catalog.filters import CATEGORY_ORDERING, PRODUCT_ORDERING

    failures: list[str] = []
    compared = 0
    with httpx.Client(base_url=monolith, timeout=10, headers={"Host": HOST}) as mono, \
            httpx.Client(base_url=catalog, timeout=10, headers={"Host": HOST}) as serv:
        for path, params in contract.FIXED_REQUESTS:
            why = ""
            for attempt in range(tries):
                allowed: tuple[str, ...]
                if path.startswith("/api/categories/"):
                    allowed, rows = CATEGORY_ORDERING, _all_rows(mono, "/api/categories/")
                elif path.endswith("/price-history/"):
                    allowed, rows = (), {}
                else:
                    allowed, rows = PRODUCT_ORDERING, None
                m, s = mono.get(path, params=params), serv.get(path, params=params)
                if rows is None:
                    body = m.json() if m.headers.get("content-type", "").startswith("application/json") else {}
                    rows = {r["id"]: r for r in body.get("results") or []} if isinstance(body, dict) else {}
                try:
                    contract.compare(m, s, ordering=params.get("ordering"), allowed=allowed, known_rows=rows)
                    why = ""
                    break
                except (AssertionError, KeyError, ValueError) as exc:
                    why = f"{path}?{params}: {exc}"
                    time.sleep(0.5 * (attempt + 1))
            compared += 1
            if why:
                failures.append(why)
    return failures, compared


def act_3(walk: Walk, step: Step) -> None:
    walk.sup.start_more(cdc_process(walk, "catalog"), progress=walk.say)
    wait_caught_up(walk, "catalog")
    # the way back (no copy: the monolith has every row), ready for step 4's flip
    walk.sup.start_more(cdc_process(walk, "catalog_reverse"), progress=walk.say)
    wait_caught_up(walk, "catalog_reverse")
    enforce(walk.streams_file, walk.env)  # the monolith owns: the catalog's copy refuses application writes
    set_shadow(walk.routes, PRODUCTS, 100)
    deadline = time.monotonic() + walk.plan.shadow_seconds
    while time.monotonic() < deadline:
        walk.say(f"shadowing product reads to the catalog, {deadline - time.monotonic():.0f}s left")
        time.sleep(0.5)
    walk.facts["shadow"] = (route_entry(walk.router().status(), PRODUCTS).get("shadow") or {})
    set_shadow(walk.routes, PRODUCTS, 0)
    # the differing pairs as the router kept them, to read after the run
    (walk.home / "shadow.json").write_text(json.dumps(walk.facts["shadow"], indent=2, default=str))


def settled(walk: Walk, stream: str) -> dict[str, Any]:
    """The stream's metrics once it caught up (a user who just started it gets the time it
    needs, up to the CDC timeout), or as they are when it never does."""
    with contextlib.suppress(StackError):
        return wait_caught_up(walk, stream)
    return _metrics(walk, stream)


def check_3(walk: Walk, step: Step) -> list[Result]:
    params = next(c for c in step.checks if c.name == "contract_tests_live").params
    failures, compared = contract_live(walk.url("monolith"), walk.url("catalog"), REPO / str(params["contract"]))
    shadow = walk.facts.get("shadow") or route_entry(walk.router().status(), PRODUCTS).get("shadow") or {}
    caught_up = settled(walk, "catalog")
    rechecked = in_flight(walk.url("monolith"), walk.url("catalog"), shadow.get("pairs") or [], host=HOST)
    return [_run(step, "cdc_caught_up", checks.cdc_caught_up, caught_up),
            checks.contract_tests_live(failures, compared),
            _run(step, "shadow_within_noise", checks.shadow_within_noise, shadow, rechecked)]


# -- step 4: move write ownership -------------------------------------------------------------

def act_4(walk: Walk, step: Step) -> None:
    flip = move_writes(walk.home, walk.env, router_url=walk.router_url)
    walk.facts["ownership"] = {"outcome": flip["outcome"], "hold_s": flip.get("hold_s"), "phases": flip.get("phases")}


def check_4(walk: Walk, step: Step) -> list[Result]:
    try:
        proof = prove_write(walk.router_url, walk.env["MONOLITH_DATABASE_URL"])
        walk.facts.setdefault("ownership", {})["write_after_flip"] = proof
        served_by: str | None = proof["served_by"]
    except StackError as exc:
        walk.say(str(exc))
        served_by = None
    ownership = yaml.safe_load((walk.home / "ownership.yaml").read_text())
    settled(walk, "catalog")
    reverse = settled(walk, "catalog_reverse")
    differing: dict[str, int | None] = {}
    for stream in next(c for c in step.checks if c.name == "parity_both_ways").params["streams"]:
        differing[stream], walk.facts[f"verify:{stream}"] = verify(walk, str(stream))
    return [_run(step, "write_owner", checks.write_owner, ownership, served_by),
            _run(step, "cdc_caught_up", checks.cdc_caught_up, reverse),
            _run(step, "parity_both_ways", checks.parity_both_ways, differing)]


# -- step 5: observability --------------------------------------------------------------------

def traced_request(router_url: str) -> str:
    """One product read through the router to the catalog (the override header), with a
    sampled traceparent; its trace id."""
    trace_id = os.urandom(16).hex()
    with httpx.Client(timeout=10) as client:
        client.get(router_url + "/api/products/", headers={
            "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01", OVERRIDE_HEADER: "always"})
    return trace_id


def act_5(walk: Walk, step: Step) -> None:
    assert walk.receiver is not None
    endpoint = walk.receiver.endpoint

    def on(doc: dict[str, Any]) -> None:
        doc["tracing"] = {"exporter": "zipkin", "endpoint": endpoint, "sample": 0.0}  # only traced requests

    _edit_routes(walk, on, "the tracing block")


def check_5(walk: Walk, step: Step) -> list[Result]:
    assert walk.receiver is not None
    services = [str(s) for s in next(c for c in step.checks if c.name == "trace_crosses").params["services"]]
    sent: set[str] = set()
    result = checks.trace_crosses([], services=services)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # spans leave in batches (every few seconds): until one trace is whole
        if len(sent) < 5:
            sent.add(traced_request(walk.router_url))
        time.sleep(1.0)
        result = checks.trace_crosses([s for s in walk.receiver.snapshot() if s.get("traceId") in sent],
                                      services=services)
        if result.ok:
            break
    # where it was found: the walkthrough's receiver, or (--real) Zipkin's own query API
    result = replace(result, detail=f"{result.detail}; read from {walk.receiver.store}")
    walk.facts["trace"] = {"store": walk.receiver.store, "found": result.ok,
                           "trace_id": result.figures.get("trace_id"), "sent": len(sent)}
    _, snaps = snapshots(walk.router().status(), PRODUCTS)
    counts = {b: s.requests for b, s in snaps.items()}
    return [result, _run(step, "metrics_per_backend", checks.metrics_per_backend, counts)]


# -- step 6: canary ---------------------------------------------------------------------------

def _catalog_drill(walk: Walk, port: int) -> Process:
    catalog = walk.stack.process("catalog")
    argv = tuple(str(port) if a == str(catalog.port) else a for a in catalog.argv)
    return replace(catalog, name="catalog-drill", port=port, argv=argv,
                   env={**catalog.env, "CATALOG_ADMIN_TOKEN": walk.settings.admin_token,
                        "OTEL_SDK_DISABLED": "true"})


def set_fail_rate(base_url: str, token: str, rate: float) -> float:
    """The catalog's fault switch (`PUT /_catalog/fail-rate`), read back."""
    with httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as client:
        answer = client.put("/_catalog/fail-rate", json={"rate": rate})
        if answer.status_code != 200:
            raise StackError(f"the catalog's fault switch answered {answer.status_code}: {answer.text[:200]}")
        return float(client.get("/_catalog/fail-rate").json()["fail_rate"])


def drill_6(walk: Walk, step: Step) -> None:
    """The tool's part of step 6, whoever runs the real canary: the drill, then the probe."""
    plan = walk.plan
    fail_rate = float(next(c for c in step.checks if c.name == "canary_rolled_back").params["fail_rate"])
    # the drill: a copy of the catalog with its fault switch on, behind a route only the
    # probe's marked reads match, so the users' traffic never meets the failures
    drill = _catalog_drill(walk, int(walk.facts["drill_port"]))
    walk.sup.start_more(drill, progress=walk.say)
    set_fail_rate(drill.base_url or "", walk.settings.admin_token, fail_rate)
    probe = Probe(walk.router_url, salt=DRILL, first_weight=plan.steps[0], rate=plan.probe_rate,
                  headers={DRILL_HEADER: "1"}).start()
    try:
        walk.facts["drill"] = _canary(walk, DRILL, "catalog_drill", lambda s: walk.say(f"drill: {s}"))
    finally:
        probe.stop()
    walk.facts["drill"]["probe"] = {"sent": probe.sent, "failed_on_purpose": probe.failed}
    walk.facts["drill_weights"] = weights(route_entry(walk.router().status(), DRILL))
    # the real one: the probe's cohorts reach the gate's minimum at the first step
    walk.probes.append(Probe(walk.router_url, salt=PRODUCTS, first_weight=plan.steps[0],
                             rate=plan.probe_rate).start())


def act_6(walk: Walk, step: Step) -> None:
    walk.facts["canary"] = _canary(walk, PRODUCTS, "catalog", walk.say)
    time.sleep(walk.plan.settle)


def canary_from_ledger(walk: Walk, route: str, candidate: str) -> dict[str, Any] | None:
    """A canary run by hand (`strangler canary`): its outcome as the ledger recorded it."""
    try:
        lines = (walk.home / "ledger.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        entry = json.loads(line)
        reason = str(entry.get("reason", ""))
        if entry.get("route") == route and reason.startswith(f"canary {route} → {candidate} complete"):
            return {"outcome": "promoted", "why": reason}
        if entry.get("route") == route and reason.startswith("canary rollback"):
            return {"outcome": "rolled_back", "why": reason}
    return None


def check_6(walk: Walk, step: Step) -> list[Result]:
    status = walk.router().status()
    drill_w = walk.facts.get("drill_weights") or weights(route_entry(status, DRILL))
    split = next(c for c in step.checks if c.name == "observed_split").params
    assert walk.sampler is not None
    since = walk.sampler.elapsed()
    while walk.sampler.elapsed() - since < float(split["seconds"]):  # a window after the promotion
        time.sleep(0.2)
    return [_run(step, "canary_rolled_back", checks.canary_rolled_back, walk.facts.get("drill"), drill_w),
            _run(step, "canary_promoted", checks.canary_promoted,
                 walk.facts.get("canary") or canary_from_ledger(walk, PRODUCTS, "catalog"),
                 weights(route_entry(status, PRODUCTS))),
            _run(step, "observed_split", checks.observed_split, walk.sampler.deltas_since(since))]


# -- step 7: deprecate ------------------------------------------------------------------------

def retire_7(walk: Walk, step: Step) -> None:
    """The tool's part of step 7: watch the window, then move the router to a monolith
    started with its catalog writes retired and stop the old one."""
    window = float(next(c for c in step.checks if c.name == "zero_traffic_window").params["seconds"])
    assert walk.sampler is not None
    t0 = walk.sampler.elapsed()
    while walk.sampler.elapsed() - t0 < window:  # the window is observed before anything is retired
        walk.say(f"watching the monolith's share of {PRODUCTS}: {window - walk.sampler.elapsed() + t0:.0f}s left")
        time.sleep(0.2)
    walk.facts["window"] = (walk.sampler.deltas_since(t0), walk.sampler.elapsed() - t0)
    # a fresh monolith with the catalog writes retired; the router moves to it, then the old one stops
    old = walk.stack.process("monolith")
    port = free_port()
    argv = tuple(str(port) if a == str(old.port) else a for a in old.argv)
    new = replace(old, name="monolith-retired", port=port, argv=argv,
                  env={**old.env, "MONOLITH_RETIRED": "catalog-writes"})
    walk.sup.start_more(new, progress=walk.say)
    walk.facts["retired_monolith"] = new.base_url

    def point(doc: dict[str, Any]) -> None:
        doc["upstreams"]["monolith"]["url"] = new.base_url

    _edit_routes(walk, point, "the retired monolith's address")
    # the router runs the new table; uvicorn's SIGTERM lets the old monolith's requests in flight finish
    for run in walk.sup.running():
        if run.name == "monolith" and run.alive:
            os.killpg(run.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(run.pid) and time.monotonic() < deadline:
                time.sleep(0.1)


def act_7(walk: Walk, step: Step) -> None:
    def clean(doc: dict[str, Any]) -> None:
        for route in doc["routes"]:
            if route["name"] == PRODUCTS:
                route["backends"] = {"catalog": 100}
                for key in ("fallback", "shadow", "override"):
                    route.pop(key, None)

    _edit_routes(walk, clean, "the cleaned route")


def lint_imports(config: Path) -> tuple[int, str]:
    exe = Path(sys.executable).with_name("lint-imports")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    proc = subprocess.run([*argv, "--no-cache", str(config)], cwd=str(REPO), capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc.returncode, proc.stdout + proc.stderr


def check_7(walk: Walk, step: Step) -> list[Result]:
    deltas, seconds = walk.facts.get("window") or ([], 0.0)
    retired = next(c for c in step.checks if c.name == "monolith_writes_retired").params
    url = walk.facts.get("retired_monolith") or walk.url("monolith")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            observed: int | None = client.request(str(retired["method"]), str(retired["path"]),
                                                  json={"price": "1.00"}).status_code
    except httpx.HTTPError:
        observed = None
    contract = next(c for c in step.checks if c.name == "import_contract").params
    code, output = lint_imports(REPO / str(contract["config"]))
    return [_run(step, "zero_traffic_window", checks.zero_traffic_window, deltas, seconds),
            checks.monolith_writes_retired(observed, **retired),
            checks.import_contract(code, output, config=str(contract["config"])),
            _run(step, "route_cleaned", checks.route_cleaned, walk.router().routes())]


ACTS: dict[int, Callable[[Walk, Step], None]] = {1: act_1, 2: act_2, 3: act_3, 4: act_4, 5: act_5, 6: act_6, 7: act_7}
# the parts the tool does itself even when the user acts (`yourself`), before the user's act
ALWAYS: dict[int, Callable[[Walk, Step], None]] = {2: act_2, 5: act_5, 6: drill_6, 7: retire_7}
CHECKS: dict[int, Callable[[Walk, Step], list[Result]]] = {
    1: check_1, 2: check_2, 3: check_3, 4: check_4, 5: check_5, 6: check_6, 7: check_7}
