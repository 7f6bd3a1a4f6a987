"""One check per exercise: a function of the exercise folder that returns a Result.

Each looks at state, not at text: files go through the project's own loaders (the router's
`parse_config`, `cdc.config`, `ownership.load`), databases are queried, streams run, and the
router's own matching, balancing and diffing are asked what they would do. Every Problem
says where (file and key, table, route) and what to change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from workshop.model import Problem, Result

# ---- helpers ----------------------------------------------------------------------------


def _yaml(path: Path, problems: list[Problem]) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        problems.append(Problem(path.name, f"cannot read it ({exc.strerror}); `strangler workshop reset` brings it back"))
    except yaml.YAMLError as exc:
        problems.append(Problem(path.name, f"not valid YAML: {exc}"))
    return None


def _routes(path: Path, problems: list[Problem]) -> Any:
    from router.config import parse_config
    from router.errors import ConfigError

    try:
        return parse_config(path.read_text(), source=str(path), base_dir=path.parent)
    except ConfigError as exc:
        problems.append(Problem(path.name, f"the router refuses it: {exc}"))
    except OSError as exc:
        problems.append(Problem(path.name, f"cannot read it: {exc.strerror}"))
    return None


def _streams(path: Path, problems: list[Problem]) -> Any:
    from cdc import config
    from cdc.errors import CDCError

    try:
        return config.load(path)
    except CDCError as exc:
        problems.append(Problem(path.name, str(exc)))
    return None


def _short(app: str) -> str:
    return app.rsplit(".", 1)[-1]


# ---- 1 map the contexts -----------------------------------------------------------------

MapSource = Callable[[], dict[str, Any]]


def map_document() -> dict[str, Any]:
    """`strangler map`'s document for the shop (contextmap.build_map, from the repository root)."""
    import contextmap

    doc: dict[str, Any] = contextmap.build_map("monolith.settings", cwd=Path(__file__).resolve().parents[1])
    return doc


def map_contexts(where: Path, *, source: MapSource | None = None) -> Result:
    problems: list[Problem] = []
    doc = _yaml(where / "contexts.yaml", problems)
    if problems:
        return Result(tuple(problems))
    declared = (doc or {}).get("contexts") if isinstance(doc, dict) else None
    if not isinstance(declared, dict) or not declared:
        return Result((Problem("contexts.yaml: contexts", "give a mapping of context name -> {apps: [...]}"),))
    found = (source or map_document)()
    # the shop's own contexts: not Django's or a library's apps, nor an app without tables
    own = {name: body for name, body in found["contexts"].items()
           if not body.get("external") and body.get("tables")}
    mapped = {name: {_short(a) for a in body.get("apps", [])} for name, body in own.items()}
    map_tables = {name: set(body.get("tables", [])) for name, body in own.items()}
    app_home = {a: name for name, apps in mapped.items() for a in apps}
    seen: dict[str, str] = {}
    for name, body in declared.items():
        apps = body.get("apps") if isinstance(body, dict) else None
        if not isinstance(apps, list) or not apps:
            problems.append(Problem(f"contexts.yaml: contexts.{name}.apps", "list the Django apps of this context"))
            continue
        for app in map(str, apps):
            if app in seen:
                problems.append(Problem(f"contexts.yaml: contexts.{name}.apps",
                                        f"app {app} is also in context {seen[app]}: an app belongs to one context"))
            seen[app] = name
            if app not in app_home:
                problems.append(Problem(f"contexts.yaml: contexts.{name}.apps",
                                        f"no app {app} in the map (apps: {', '.join(sorted(app_home))})"))
        want = {a for a in map(str, apps) if a in app_home}
        homes = {app_home[a] for a in want}
        for home in sorted(homes):
            if mapped[home] - want:
                problems.append(Problem(f"contexts.yaml: contexts.{name}",
                                        f"the map keeps {', '.join(sorted(mapped[home]))} together (context "
                                        f"{home}); {name} has only {', '.join(sorted(want & mapped[home]))} of them"))
        if len(homes) > 1:
            problems.append(Problem(f"contexts.yaml: contexts.{name}",
                                    f"joins apps the map puts in {len(homes)} contexts "
                                    f"({', '.join(sorted(homes))}): split it"))
        tables = body.get("tables")
        if isinstance(tables, list) and len(homes) == 1:
            home = next(iter(homes))
            missing, extra = map_tables[home] - set(tables), set(tables) - map_tables[home]
            if missing or extra:
                problems.append(Problem(f"contexts.yaml: contexts.{name}.tables",
                                        f"the map gives {home} the tables {', '.join(sorted(map_tables[home]))}"
                                        + (f"; missing {', '.join(sorted(missing))}" if missing else "")
                                        + (f"; not its own: {', '.join(sorted(extra))}" if extra else "")))
    for app in sorted(set(app_home) - set(seen)):
        problems.append(Problem("contexts.yaml: contexts", f"app {app} is in no context; the map puts it in {app_home[app]}"))
    return Result(tuple(problems), (f"{len(mapped)} contexts in the map, {len(declared)} declared",))


# ---- 2 the router in front --------------------------------------------------------------

GOLDEN = (("GET", "/"), ("GET", "/api/products/"), ("GET", "/api/products/1/"),
          ("GET", "/api/categories/"), ("POST", "/api/products/"), ("GET", "/api/orders/"),
          ("POST", "/api/cart/items/"), ("GET", "/login/"), ("GET", "/products/3/"))
MONOLITH_URL = "http://127.0.0.1:8000"


def backends_seen(route: Any, *, users: int = 200) -> set[str]:
    """Which upstreams `route` sends its users to (the router's own bucketing, `users` cohorts),
    plus its fallback (answered when the first choice fails)."""
    from router.balance import choose

    seen = {choose(route.backends, salt=route.salt, key=f"user-{i}") for i in range(users)}
    if route.fallback:
        seen.add(route.fallback)
    return seen


def router_in_front(where: Path) -> Result:
    from router.match import RouteTable

    problems: list[Problem] = []
    cfg = _routes(where / "routes.yaml", problems)
    if cfg is None:
        return Result(tuple(problems))
    mono = cfg.upstreams.get("monolith")
    if mono is None:
        return Result((Problem("routes.yaml: upstreams", "declare the monolith: `monolith: {url: \"http://127.0.0.1:8000\"}`"),))
    url = str(getattr(mono, "url", "") or getattr(mono.endpoints[0], "url", "")) if hasattr(mono, "endpoints") else str(mono.url)
    if url.rstrip("/") != MONOLITH_URL:
        problems.append(Problem("routes.yaml: upstreams.monolith.url", f"{url} is not the shop ({MONOLITH_URL})"))
    table = RouteTable(cfg.routes)
    for method, path in GOLDEN:
        route = table.match(method, path, None, [])
        if route is None:
            problems.append(Problem(f"{method} {path}", "no route matches: the router would answer 404 "
                                    "where the monolith answers; add a catch-all route (prefix /) to monolith"))
            continue
        others = sorted(backends_seen(route) - {"monolith"})
        if others:
            problems.append(Problem(f"routes.yaml: routes.{route.name}",
                                    f"{method} {path} reaches {', '.join(others)} for some users "
                                    f"(weights {route.weights}); put 100 on monolith"))
    if not problems:
        problems += asyncio.run(_ask_live_router(where / "routes.yaml"))
    return Result(tuple(problems), (f"{len(GOLDEN)} golden requests matched and balanced, then sent through "
                                    "a live router (the learner's routes.yaml) to stand-in upstreams",))


async def _stand_in(name: str) -> tuple[asyncio.Server, int]:
    """A loopback upstream answering every request with {"upstream": name, "path": ...}."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                               if k.strip().lower() == "content-length"), 0)
                if length:
                    await reader.readexactly(length)
                body = json.dumps({"upstream": name, "path": lines[0].split(" ")[1]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError):
            pass  # the router closed its pooled connection, or the check is over
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask_live_router(path: Path) -> list[Problem]:
    """Serve the learner's routes.yaml with the real router in front of stand-ins for the
    monolith and the catalog, and send it the golden requests as five users would."""
    import httpx

    from router.config import parse_config
    from router.proxy import Router

    servers = {name: await _stand_in(name) for name in ("monolith", "catalog")}
    text = path.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{servers['monolith'][1]}")
    text = text.replace("127.0.0.1:8001", f"127.0.0.1:{servers['catalog'][1]}")
    config = dataclasses.replace(parse_config(text, source=str(path), base_dir=path.parent), access_log=False)
    router = Router(config=config)
    problems: list[Problem] = []
    await router.startup()
    try:
        transport = httpx.ASGITransport(app=router)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            for method, url in GOLDEN:
                for user in range(5):
                    r = await client.request(method, url, headers={"cookie": f"sessionid=user-{user}"})
                    got = r.json().get("upstream") if r.headers.get("content-type") == "application/json" else None
                    if r.status_code != 200 or got != "monolith":
                        problems.append(Problem(f"live router: {method} {url}", f"user-{user} got {r.status_code} "
                                                f"from {got or 'the router itself'}: {r.text[:120]}"))
                        break
    finally:
        await router.shutdown()
        for server, _ in servers.values():
            server.close()
    return problems


# ---- 3 a CDC mapping --------------------------------------------------------------------


def run_stream(cfg: Any, *, timeout: float = 30.0) -> None:
    """Run the stream until it streams (its first copy done), or raise its error."""
    from cdc.pipeline import Pipeline

    pipe = Pipeline(cfg, on_tick=lambda m: None)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            pipe.run(until=lambda: pipe.metrics.state == "streaming")
        except BaseException as exc:  # reported by the check
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pipe.stop()
        thread.join(10)
        raise TimeoutError(f"stream {cfg.name} did not finish its copy within {timeout:g} s")
    if errors:
        raise errors[0]


def stream_parity(cfg: Any) -> list[Problem]:
    """Run `cfg` (copy, then stream) and verify both sides; problems name the tables and keys."""
    from cdc.errors import CDCError
    from cdc.pipeline import open_stream
    from cdc.verify import verify_stream

    where = f"streams.yaml: streams.{cfg.name}"
    try:
        run_stream(cfg)
        source, engine, mappings = open_stream(cfg)
        source.close()
        engine.dispose()
    except (CDCError, TimeoutError) as exc:
        return [Problem(where, f"the stream stops: {exc}")]
    src = sqlite3.connect(cfg.source_url.split("///", 1)[1])
    tgt = sqlite3.connect(cfg.target_url.split("///", 1)[1])
    try:
        diffs = verify_stream(cfg, mappings, src, tgt, recheck_wait=0, rounds=0)
    finally:
        src.close()
        tgt.close()
    out = []
    for d in diffs:
        if not d.equal:
            out.append(Problem(f"{where}.tables.{d.table}",
                               f"verify: {len(d.missing)} missing, {len(d.extra)} extra, "
                               f"{len(d.different)} different rows (keys {list(d.missing + d.extra + d.different)[:5]})"))
    return out


def cdc_mapping(where: Path) -> Result:
    problems: list[Problem] = []
    sf = _streams(where / "streams.yaml", problems)
    if sf is None:
        return Result(tuple(problems))
    try:
        cfg = sf.stream("prices")
    except Exception:
        return Result((Problem("streams.yaml: streams", "keep the stream named prices"),))
    if "catalog_pricehistory" not in {t.source for t in cfg.tables}:
        return Result((Problem("streams.yaml: streams.prices.tables", "map catalog_pricehistory"),))
    problems += stream_parity(cfg)
    return Result(tuple(problems), ("stream prices ran on SQLite and verify compared every row",))


# ---- 4 extract a second context ---------------------------------------------------------


def _ownership(path: Path, problems: list[Problem]) -> Any:
    import ownership

    try:
        return ownership.load(path)
    except ownership.OwnershipError as exc:
        problems.append(Problem(path.name, str(exc)))
    return None


def _mapping_fits(cfg: Any) -> list[Problem]:
    """The stream's mapping checked against both live schemas (what `cdc run` does first)."""
    from cdc.errors import CDCError
    from cdc.pipeline import open_stream

    try:
        source, engine, _ = open_stream(cfg)
    except CDCError as exc:
        return [Problem(f"streams.yaml: streams.{cfg.name}", str(exc))]
    source.close()
    engine.dispose()
    return []


def extract_shipping(where: Path) -> Result:
    from router.match import RouteTable

    problems: list[Problem] = []
    own = _ownership(where / "ownership.yaml", problems)
    sf = _streams(where / "streams.yaml", problems)
    cfg = _routes(where / "routes.yaml", problems)
    if cfg is not None:
        up = cfg.upstreams.get("shipping")
        if up is None:
            problems.append(Problem("routes.yaml: upstreams", "declare `shipping: {url: \"http://127.0.0.1:8003\"}`"))
        route = RouteTable(cfg.routes).match("GET", "/api/shipments/", None, [])
        if route is None or "shipping" not in route.weights:
            problems.append(Problem("routes.yaml: routes", "no route sends /api/shipments to shipping; add one "
                                    "with `backends: {monolith: 100, shipping: 0}`"))
        else:
            if backends_seen(route) - {"monolith"}:
                problems.append(Problem(f"routes.yaml: routes.{route.name}", f"weights {route.weights} already move "
                                        "users to shipping; extract first at weight 0, shift later"))
            if route.writes != "shipping":
                problems.append(Problem(f"routes.yaml: routes.{route.name}.writes",
                                        "say `writes: shipping`: write methods follow the ownership group, not the weights"))
    if own is not None:
        group = own.groups.get("shipping")
        if group is None:
            problems.append(Problem("ownership.yaml: groups", "add the group shipping (owner monolith, sides monolith and shipping)"))
        else:
            if group.owner != "monolith":
                problems.append(Problem("ownership.yaml: groups.shipping.owner", "the monolith keeps writing until the flip: owner monolith"))
            for side in ("monolith", "shipping"):
                if side not in group.sides:
                    problems.append(Problem("ownership.yaml: groups.shipping.sides", f"add the side {side}"))
                elif sf is not None and group.sides[side].stream not in sf.streams:
                    problems.append(Problem(f"ownership.yaml: groups.shipping.sides.{side}.stream",
                                            f"stream {group.sides[side].stream} is not in streams.yaml"))
    if sf is not None:
        fwd = sf.streams.get("shipping")
        if fwd is None:
            problems.append(Problem("streams.yaml: streams", "add the stream shipping (shipping_shipment -> shipments)"))
        elif not problems:  # run it only once the files agree
            problems += stream_parity(fwd)
            for other in sf.streams.values():
                if other.name != "shipping":
                    problems += _mapping_fits(other)
    return Result(tuple(problems), ("routes, ownership and streams loaded by their own loaders; the stream ran",))


# ---- 5 move write ownership -------------------------------------------------------------


def _refuses_insert(path: str, table: str) -> bool:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")') if not r[5]]
        conn.execute("BEGIN")
        try:
            conn.execute(f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({", ".join("0" for _ in cols)})')
        except sqlite3.DatabaseError:
            return True
        finally:
            conn.execute("ROLLBACK")
        return False
    finally:
        conn.close()


def _count(path: str, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


def move_ownership(where: Path) -> Result:
    from cdc import ids
    from cdc.guard import guard_state
    from extracted.catalog.models import ID_BLOCK

    problems: list[Problem] = []
    own = _ownership(where / "ownership.yaml", problems)
    sf = _streams(where / "streams.yaml", problems)
    if own is None or sf is None:
        return Result(tuple(problems))
    group = own.groups["catalog"]
    if group.owner != "catalog":
        problems.append(Problem("ownership.yaml: groups.catalog.owner", f"still {group.owner}: move it with "
                                "`strangler own catalog --by catalog` (it also moves the guards and ids)"))
    if getattr(group, "hold", None):
        problems.append(Problem("ownership.yaml: groups.catalog.hold", "a flip was left half done; run "
                                "`strangler own` again to finish it or `--undo`"))
    mono_url, cat_url = sf.stream("fwd").source_url, sf.stream("fwd").target_url
    mono_db = mono_url.split("///", 1)[1]
    if not _refuses_insert(mono_db, "catalog_product"):
        problems.append(Problem("monolith.sqlite3: catalog_product", "accepts an application insert: the "
                                "monolith's database must refuse writes to tables it no longer owns (guards)"))
    cat_db = cat_url.split("///", 1)[1]
    counts = [_count(db, t) for db, t in ((mono_db, "catalog_product"), (cat_db, "products"))]
    if counts[1] < counts[0]:
        problems.append(Problem("catalog.sqlite3: products", f"holds {counts[1]} of the monolith's {counts[0]} "
                                "products: the forward stream must have copied them before the flip"))
    opened = guard_state(cat_url, group, "catalog")
    for table, st in opened.items():
        if st != "open":
            problems.append(Problem(f"catalog.sqlite3: {table}", f"is {st}: the new owner must be writable"))
    alloc = ids.describe(cat_url, "products")
    if alloc.next_id is None or not ID_BLOCK[0] <= alloc.next_id < ID_BLOCK[1]:
        problems.append(Problem("catalog.sqlite3: products.id", f"the next id would be {alloc.next_id}, in the "
                                f"monolith's range: the catalog allocates in [{ID_BLOCK[0]}, {ID_BLOCK[1]}) "
                                "(`strangler ids reserve`, or `strangler own` does it)"))
    return Result(tuple(problems), ("ownership file, both databases' guards and the catalog's id allocator",))


def apply_move_ownership(where: Path) -> None:
    """What `strangler own` does here, without a router: copy, guards, ids, flip."""
    import ownership
    from cdc import config, ids
    from cdc.guard import apply_guards
    from extracted.catalog.models import ID_BLOCK

    path = where / "ownership.yaml"
    ownership.write(path, ownership.with_owner(ownership.load(path), "catalog", "monolith"))
    fwd = config.load(where / "streams.yaml").stream("fwd")
    run_stream(fwd)  # the copy, while the monolith still owns
    own = ownership.with_owner(ownership.load(path), "catalog", "catalog")
    group = own.groups["catalog"]
    apply_guards(fwd.source_url, group, "monolith")
    apply_guards(fwd.target_url, group, "catalog")
    ids.prepare_owner(fwd.target_url, group.side("catalog").tables, ID_BLOCK)
    ownership.write(where / "ownership.yaml", own)


SOLUTION_STEPS: dict[str, Callable[[Path], None]] = {"move_ownership": apply_move_ownership}


# ---- 6 a canary that must roll back -----------------------------------------------------


class SimulatedRouter:
    """A router for the canary loop: `rate` requests a second split by the weights, the
    candidate failing `fail` of its requests (seeded), on a clock the loop's sleep advances."""

    def __init__(self, *, route: str, candidate: str, fail: float, rate: float = 20.0, seed: int = 19) -> None:
        import random

        self.route, self.candidate, self.fail, self.rate = route, candidate, fail, rate
        self.weights = {"monolith": 100, candidate: 0}
        self.counts = {b: [0, 0] for b in self.weights}
        self.now = 0.0
        self.rng = random.Random(seed)

    def sleep(self, seconds: float) -> None:
        for _ in range(round(seconds * self.rate)):
            b = "monolith" if self.rng.random() * 100 >= self.weights[self.candidate] else self.candidate
            self.counts[b][0] += 1
            failing = self.fail if b == self.candidate else 0.003
            self.counts[b][1] += self.rng.random() < failing
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def snapshot(self, route: str) -> tuple[dict[str, int], dict[str, Any]]:
        from rollout.gate import Snapshot

        return dict(self.weights), {b: Snapshot(n, e, ((10.0, n), (float("inf"), n))) for b, (n, e) in self.counts.items()}

    def set_weight(self, route: str, backend: str, weight: int, reason: str) -> dict[str, int]:
        self.weights = {"monolith": 100 - weight, backend: weight}
        return dict(self.weights)

    def note(self, route: str, weights: dict[str, int], reason: str) -> None:
        pass


def canary_rollback(where: Path) -> Result:
    from rollout.canary import CanaryPlan, run_canary
    from rollout.gate import Gate

    problems: list[Problem] = []
    doc = _yaml(where / "canary.yaml", problems)
    if problems:
        return Result(tuple(problems))
    try:
        steps = tuple(int(s) for s in doc["steps"])
        gate = Gate(max_error_rate=float(doc["max_error_rate"]), min_requests=int(doc["min_requests"]),
                    max_p99_ratio=float(doc.get("max_p99_ratio", 1.5)))
        plan = CanaryPlan(route=str(doc["route"]), candidate=str(doc["candidate"]), steps=steps,
                          interval=float(doc["interval"]), max_wait=float(doc["max_wait"]), gate=gate)
    except (KeyError, TypeError, ValueError) as exc:
        return Result((Problem("canary.yaml", f"not a plan the canary accepts: {exc!r}"),))
    notes = []
    for fail, want in ((0.2, "rolled_back"), (0.003, "promoted")):
        sim = SimulatedRouter(route=plan.route, candidate=plan.candidate, fail=fail)
        result = run_canary(sim, plan, say=lambda _: None, clock=sim.clock, sleep=sim.sleep)
        first = result.steps[0].weight if result.steps else None
        notes.append(f"catalog failing {fail:.1%}: {result.outcome} ({result.why})")
        if result.outcome != want:
            what = ("a catalog failing 20% of requests was promoted: lower max_error_rate" if want == "rolled_back"
                    else "a healthy catalog (0.3% errors, as the monolith) was not promoted: the gate is too strict "
                         "or the steps wait for more traffic than arrives")
            problems.append(Problem("canary.yaml", f"{what} — {result.why}"))
        elif want == "rolled_back" and (first is None or first > 10 or len(result.steps) != 1):
            problems.append(Problem("canary.yaml: steps", f"the rollback came at {result.steps[-1].weight}%: "
                                    "start with a step of at most 10% so few users see a failing candidate"))
    return Result(tuple(problems), tuple(notes))


# ---- 7 retire a monolith path -----------------------------------------------------------

RETIRED = ("/api/products/", "/api/categories/")


def retire_path(where: Path) -> Result:
    import json

    from router.match import RouteTable

    problems: list[Problem] = []
    cfg = _routes(where / "routes.yaml", problems)
    if cfg is not None:
        table = RouteTable(cfg.routes)
        for path in RETIRED:
            for method in ("GET", "POST"):
                route = table.match(method, path, None, [])
                if route is None:
                    problems.append(Problem(f"{method} {path}", "no route: the catalog must answer it"))
                    continue
                where_ = f"routes.yaml: routes.{route.name}"
                if "monolith" in backends_seen(route) - ({route.fallback} if route.fallback else set()):
                    problems.append(Problem(where_, f"{method} {path} still reaches the monolith by weight"))
                if method == "GET":
                    if route.fallback == "monolith":
                        problems.append(Problem(f"{where_}.fallback", "the monolith answers when the catalog fails: remove it"))
                    if route.candidate == "monolith" or "monolith" in route.weights:
                        problems.append(Problem(f"{where_}.backends", "monolith is still a backend (or the override's "
                                                "candidate): one header brings the retired code back; remove it"))
        root_route = table.match("GET", "/", None, [])
        if root_route is None or backends_seen(root_route) != {"monolith"}:
            problems.append(Problem("routes.yaml: routes", "keep the catch-all (prefix /) on the monolith: only the catalog's paths retire"))
    try:
        observed = json.loads((where / "observed.json").read_text())
        for name in ("products", "categories"):
            seen = observed["routes"][name]["monolith"]["requests"]
            if seen or observed["window_seconds"] < 600:
                problems.append(Problem(f"observed.json: routes.{name}", f"{seen} monolith requests in "
                                        f"{observed['window_seconds']} s: wait for a zero-traffic window of 10 minutes"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(Problem("observed.json", f"cannot read the observed window ({exc!r}); `workshop reset 7` restores it"))
    try:
        contracts = tomllib.loads((where / "contracts.toml").read_text()).get("tool", {}).get("importlinter", {}).get("contracts", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        problems.append(Problem("contracts.toml", f"not valid TOML: {exc}"))
        contracts = []
    if not any(c.get("type") == "forbidden" and "monolith.catalog.views" in c.get("forbidden_modules", [])
               and c.get("source_modules") for c in contracts if isinstance(c, dict)):
        problems.append(Problem("contracts.toml: tool.importlinter.contracts", "add a `forbidden` contract with "
                                "forbidden_modules = [\"monolith.catalog.views\"] and the modules that must not import it"))
    return Result(tuple(problems), ("routes matched and balanced by the router's code; the contract parsed",))


# ---- 8 shadow traffic -------------------------------------------------------------------


def shadow_diff(where: Path) -> Result:
    from router.diff import Response, compare
    from router.match import RouteTable

    problems: list[Problem] = []
    cfg = _routes(where / "routes.yaml", problems)
    if cfg is None:
        return Result(tuple(problems))
    route = RouteTable(cfg.routes).match("GET", "/api/products/", None, [])
    if route is None or route.shadow is None or route.shadow.to != "catalog":
        return Result((Problem("routes.yaml: routes.products.shadow", "shadow products to the catalog: `shadow: {to: catalog, percent: 10}`"),))
    if route.shadow.percent <= 0:
        problems.append(Problem("routes.yaml: routes.products.shadow.percent", "0: no request is copied; give 1..100"))
    if backends_seen(route) != {"monolith"}:
        problems.append(Problem("routes.yaml: routes.products.backends", "while shadowing, users still get the monolith's answer"))

    shadow = route.shadow

    def diff(kind: str) -> list[str]:
        a, b = ((where / "samples" / f"{kind}-{side}.json").read_bytes() for side in ("monolith", "catalog"))
        return compare(Response(200, {}, a), Response(200, {}, b), ignore=shadow.ignore,
                       unordered=shadow.unordered)

    if same := diff("same"):
        problems.append(Problem("routes.yaml: routes.products.shadow", f"the same products differ at {', '.join(same)}: "
                                "that is noise; ignore it or compare the list unordered"))
    if not diff("bug"):
        problems.append(Problem("routes.yaml: routes.products.shadow.ignore", "a price off by a cent compares equal: "
                                "your rules ignore what the contract promises"))
    return Result(tuple(problems), ("the router's own diff ran on the samples with your rules",))
