"""`strangler break NAME`: a fault put into the running stack for a learner to find and fix.

Each break-it injects one fault the way it happens in real migrations, without restarting
anything, records what it changed (`.strangler/workshop/break/<name>.json`, for `undo`), and
has a check that says whether the learner has fixed it (exit 0) or not (exit 3), plus hints.

    stale-reads      the catalog's forward stream stops applying (SIGSTOP): lag grows, and the
                     read gate must refuse raising a weight toward the catalog
    half-dual-write  one product's price changed in the catalog's copy only, as when a dual
                     write failed half way: verify finds it, `verify --repair` mends it
    id-collision     the catalog's id allocator moved back into the monolith's range
    failing-service  the catalog answers half its /api/ requests 500 (its fault switch, live)
    cookie-mixup     the router reads cohorts and identity from a cookie the shop never sets
    stalled-slot     (--real, PostgreSQL) a forgotten replication slot pins the monolith's WAL
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workshop.errors import NotFound, WorkshopError
from workshop.model import Problem, Result
from workshop.workspace import root

STALLED_SLOT = "strangler_workshop_forgotten"


@dataclass(frozen=True, kw_only=True)
class Env:
    """Where the stack's pieces are: files, state, the catalog's URL and the admin token."""

    streams: Path = Path("streams.yaml")
    routes: Path = Path("routes.yaml")
    stream: str = "catalog"  # the catalog's forward stream
    catalog_url: str | None = None  # default: routes' upstream `catalog`
    admin_token: str | None = None
    max_lag: float = 5.0
    http: Callable[[], Any] | None = None  # an httpx.Client factory (tests: an ASGI transport)

    @classmethod
    def from_environment(cls, **given: Any) -> Env:
        env = {k: v for k, v in given.items() if v is not None}
        if "streams" not in env and os.environ.get("STRANGLER_STREAMS"):
            env["streams"] = Path(os.environ["STRANGLER_STREAMS"])
        if "routes" not in env:
            stack = _state() / "run" / "stack.json"
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                env["routes"] = Path(json.loads(stack.read_text())["routes"])
        if "admin_token" not in env:
            tok = os.environ.get("STRANGLER_ADMIN_TOKEN")
            path = _state() / "admin-token"
            env["admin_token"] = tok or (path.read_text().strip() if path.exists() else None)
        return cls(**env)

    def stream_config(self) -> Any:
        from cdc import config

        return config.load(self.streams).stream(self.stream)

    def catalog(self) -> str:
        if self.catalog_url:
            return self.catalog_url.rstrip("/")
        from router.config import parse_config

        cfg = parse_config(self.routes.read_text(), source=str(self.routes), base_dir=self.routes.parent)
        up = cfg.upstreams["catalog"]
        return str(getattr(up, "url", None) or up.endpoints[0].url).rstrip("/")

    def client(self) -> Any:
        import httpx

        return self.http() if self.http else httpx.Client(timeout=5)


@dataclass(frozen=True, kw_only=True)
class BreakIt:
    name: str
    title: str
    symptom: str
    hints: tuple[str, ...]
    inject: Callable[[Env], dict[str, Any]]
    check: Callable[[Env], Result]
    undo: Callable[[Env, dict[str, Any]], None]
    real_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _state() -> Path:
    explicit = os.environ.get("STRANGLER_STATE_DIR")
    return Path(explicit) if explicit else Path.cwd() / ".strangler"


def _sqlite_path(url: str, what: str) -> str:
    if not url.startswith("sqlite"):
        raise WorkshopError(f"{what} is {url.split(':', 1)[0]}: this break-it works on the embedded (SQLite) stack; "
                            "run `strangler up` without --real")
    return url.split("///", 1)[1]


# ---- stale reads ------------------------------------------------------------------------


def _stream_pid(env: Env) -> int:
    folder = _state() / "cdc"
    try:
        doc = json.loads((folder / f"{env.stream}.json").read_text())
        pid = int(doc["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        raise WorkshopError(f"no running stream {env.stream} (no live pid in {folder}/{env.stream}.json); "
                            "start the stack first: `strangler up`") from None
    return pid


def stale_inject(env: Env) -> dict[str, Any]:
    pid = _stream_pid(env)
    os.kill(pid, signal.SIGSTOP)
    return {"pid": pid}


def stale_check(env: Env) -> Result:
    """What the read gate of `shift` and `canary` says about raising a weight toward the
    catalog (its copy's feeding streams, from ownership.yaml), or the stream's own lag
    check where no ownership is declared."""
    from control.readgate import feeding_streams, problems
    from control.streamcheck import lag_problem

    if feeding_streams("catalog", str(env.streams)):
        found = problems("catalog", streams=str(env.streams), max_lag=env.max_lag)
    else:
        found = [p for p in [lag_problem(env.stream, env.max_lag)] if p]
    if found:
        return Result((Problem(f"stream {env.stream}", "; ".join(found) + "; the read gate refuses raising a "
                               "weight toward the catalog until it is current"),))
    return Result((), (f"stream {env.stream} is current (lag within {env.max_lag:g} s): the read gate lets a raise through",))


def stale_undo(env: Env, record: dict[str, Any]) -> None:
    with contextlib.suppress(OSError, KeyError, ValueError):
        os.kill(int(record["pid"]), signal.SIGCONT)


# ---- half-failed dual write -------------------------------------------------------------


def dual_inject(env: Env) -> dict[str, Any]:
    from cdc.origin import SQLITE_MARKER, SQLITE_MARKER_DDL

    cfg = env.stream_config()
    path = _sqlite_path(cfg.target_url, f"the target of stream {cfg.name}")
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        row = conn.execute("SELECT id, price_cents FROM products ORDER BY id LIMIT 1").fetchone()
        if row is None:
            raise WorkshopError(f"no products in {path}: seed the shop first (`strangler up` seeds it)")
        # as the forward sink writes: its marker lets the guards pass and the reverse skip it
        conn.execute(SQLITE_MARKER_DDL)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO {SQLITE_MARKER} (stream) VALUES (?)", (cfg.name,))
        conn.execute("UPDATE products SET price_cents = price_cents + 1 WHERE id = ?", (row[0],))
        conn.execute(f"DELETE FROM {SQLITE_MARKER}")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"id": row[0], "price_cents": row[1], "path": path}


def dual_check(env: Env) -> Result:
    from cdc.pipeline import open_stream
    from cdc.verify import verify_stream

    cfg = env.stream_config()
    source, engine, mappings = open_stream(cfg)
    source.close()
    engine.dispose()
    src = sqlite3.connect(_sqlite_path(cfg.source_url, "the source"))
    tgt = sqlite3.connect(_sqlite_path(cfg.target_url, "the target"))
    try:
        diffs = verify_stream(cfg, mappings, src, tgt, recheck_wait=0, rounds=0)
    finally:
        src.close()
        tgt.close()
    problems = tuple(Problem(f"stream {cfg.name}: {d.table} -> {d.target}",
                             f"{len(d.different)} different, {len(d.missing)} missing, {len(d.extra)} extra rows "
                             f"(keys {(d.different + d.missing + d.extra)[:5]})") for d in diffs if not d.equal)
    return Result(problems, (f"verify compared {sum(d.source_rows for d in diffs)} rows of {cfg.name}",))


def dual_undo(env: Env, record: dict[str, Any]) -> None:
    from cdc.origin import SQLITE_MARKER

    conn = sqlite3.connect(record["path"], isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"INSERT INTO {SQLITE_MARKER} (stream) VALUES (?)", (env.stream,))
        conn.execute("UPDATE products SET price_cents = ? WHERE id = ? AND price_cents = ?",
                     (record["price_cents"], record["id"], record["price_cents"] + 1))
        conn.execute(f"DELETE FROM {SQLITE_MARKER}")
        conn.execute("COMMIT")
    finally:
        conn.close()


# ---- id collision -----------------------------------------------------------------------


def ids_inject(env: Env) -> dict[str, Any]:
    from cdc import ids

    url = env.stream_config().target_url
    path = _sqlite_path(url, "the catalog's database")
    before = ids.describe(url, "products")
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        old = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'products'").fetchone()
        if old is None:
            raise WorkshopError(f"products in {path} has no AUTOINCREMENT sequence to move")
        low = conn.execute("SELECT coalesce(max(id), 0) FROM products WHERE id < 1000000000").fetchone()[0]
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'products'", (low,))
    finally:
        conn.close()
    return {"path": path, "seq": old[0], "next_before": before.next_id}


def ids_check(env: Env) -> Result:
    from cdc import ids
    from extracted.catalog.models import ID_BLOCK

    url = env.stream_config().target_url
    found = ids.describe(url, "products")
    if found.next_id is None or not ID_BLOCK[0] <= found.next_id < ID_BLOCK[1]:
        return Result((Problem("catalog database: products.id",
                               f"the next product the catalog creates gets id {found.next_id}, an id the monolith "
                               f"hands out too; its block is [{ID_BLOCK[0]}, {ID_BLOCK[1]})"),))
    return Result((), (f"the catalog's next product id is {found.next_id}, inside its block",))


def ids_undo(env: Env, record: dict[str, Any]) -> None:
    conn = sqlite3.connect(record["path"], isolation_level=None, timeout=30)
    try:
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'products'", (record["seq"],))
    finally:
        conn.close()


# ---- a failing service ------------------------------------------------------------------


def _fail_rate(env: Env, rate: float | None) -> float:
    url = f"{env.catalog()}/_catalog/fail-rate"
    try:
        with env.client() as http:
            if rate is None:
                resp = http.get(url)
            else:
                if not env.admin_token:
                    raise WorkshopError("no admin token (STRANGLER_ADMIN_TOKEN or .strangler/admin-token): start the stack with `strangler up`")
                resp = http.put(url, json={"rate": rate}, headers={"Authorization": f"Bearer {env.admin_token}"})
    except WorkshopError:
        raise
    except Exception as exc:  # httpx's transport errors: the catalog is not there
        raise WorkshopError(f"cannot reach the catalog at {url} ({type(exc).__name__}); start the stack: `strangler up`") from exc
    if resp.status_code != 200:
        raise WorkshopError(f"the catalog answered {resp.status_code} at {url}: {resp.text[:200]}")
    return float(resp.json()["fail_rate"])


def fail_inject(env: Env) -> dict[str, Any]:
    before = _fail_rate(env, None)
    _fail_rate(env, 0.5)
    return {"fail_rate": before}


def fail_check(env: Env) -> Result:
    rate = _fail_rate(env, None)
    if rate > 0:
        return Result((Problem(f"catalog {env.catalog()}", f"fails {rate:.0%} of its /api/ requests on purpose "
                               "(its fault switch)"),))
    return Result((), ("the catalog's fault switch is off",))


def fail_undo(env: Env, record: dict[str, Any]) -> None:
    _fail_rate(env, float(record.get("fail_rate") or 0.0))


# ---- cookie / session mix-up ------------------------------------------------------------

WRONG_COOKIE = "session_id"


def session_cookie() -> str:
    """The cookie the monolith's sessions live in (Django's SESSION_COOKIE_NAME)."""
    import importlib

    return str(getattr(importlib.import_module("monolith.settings"), "SESSION_COOKIE_NAME", "sessionid"))


def cookie_inject(env: Env) -> dict[str, Any]:
    text = env.routes.read_text()
    broken = re.sub(rf"(cookie:\s*){re.escape(session_cookie())}\b", rf"\g<1>{WRONG_COOKIE}", text)
    if broken == text:
        raise WorkshopError(f"{env.routes} names no cookie {session_cookie()}; nothing to mix up")
    saved = root() / "break" / "cookie-mixup.routes.yaml"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(text)
    tmp = env.routes.with_name(f".{env.routes.name}.tmp")
    tmp.write_text(broken)
    os.replace(tmp, env.routes)  # the running router reloads it: no restart
    return {"saved": str(saved)}


def cookie_check(env: Env) -> Result:
    from router.config import parse_config
    from router.errors import ConfigError

    try:
        cfg = parse_config(env.routes.read_text(), source=str(env.routes), base_dir=env.routes.parent)
    except ConfigError as exc:
        return Result((Problem(str(env.routes), f"the router refuses it: {exc}"),))
    want = session_cookie()
    problems = []
    if cfg.identity is not None and cfg.identity.cookie != want:
        problems.append(Problem(f"{env.routes}: identity.cookie", f"{cfg.identity.cookie!r}, but the monolith's session "
                                f"cookie is {want!r}: no logged-in user is recognised, staff writes reach the catalog as anonymous"))
    for r in cfg.routes:
        if r.cohort_cookie not in (None, want):
            problems.append(Problem(f"{env.routes}: routes.{r.name}.cohort.cookie",
                                    f"{r.cohort_cookie!r} is never set: every logged-in user falls into the anonymous cohorts"))
    return Result(tuple(problems), (f"identity and cohorts read the session cookie {want!r}",))


def cookie_undo(env: Env, record: dict[str, Any]) -> None:
    saved = Path(record["saved"])
    if saved.exists():
        os.replace(saved, env.routes)


# ---- a stalled slot (PostgreSQL) --------------------------------------------------------


def _pg(url: str) -> Any:
    import psycopg2

    from cdc.sources.postgres import libpq_dsn

    if not url.startswith("postgres"):
        raise WorkshopError("stalled-slot needs PostgreSQL: run the stack with `strangler up --real` (or give --streams "
                            "whose catalog stream reads a postgresql:// monolith)")
    conn = psycopg2.connect(libpq_dsn(url))
    conn.autocommit = True
    return conn


def slot_inject(env: Env) -> dict[str, Any]:
    conn = _pg(env.stream_config().source_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (STALLED_SLOT,))
        if cur.fetchone() is None:
            cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (STALLED_SLOT,))
        # some WAL behind it, so the slot visibly pins it
        cur.execute("CREATE TABLE IF NOT EXISTS strangler_workshop_wal (id serial PRIMARY KEY, pad text)")
        cur.execute("INSERT INTO strangler_workshop_wal (pad) SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
    finally:
        conn.close()
    return {"slot": STALLED_SLOT}


def slot_check(env: Env) -> Result:
    cfg = env.stream_config()
    conn = _pg(cfg.source_url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots "
                    "WHERE NOT active AND slot_type = 'logical' AND database = current_database()")
        idle = cur.fetchall()
    finally:
        conn.close()
    ours = {getattr(c, "slot", None) for c in _all_streams(env)}
    problems = tuple(Problem(f"slot {name}", f"inactive, holding {int(behind or 0) / 1e6:.1f} MB of WAL the server "
                             "cannot recycle; no stream reads it")
                     for name, behind in idle if name not in ours)
    return Result(problems, ("no forgotten logical slot in the monolith's database",))


def _all_streams(env: Env) -> list[Any]:
    from cdc import config

    return list(config.load(env.streams).streams.values())


def slot_undo(env: Env, record: dict[str, Any]) -> None:
    conn = _pg(env.stream_config().source_url)
    try:
        conn.cursor().execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                              "WHERE slot_name = %s AND NOT active", (record["slot"],))
    finally:
        conn.close()


BREAKITS: dict[str, BreakIt] = {b.name: b for b in (
    BreakIt(name="stale-reads", title="Stale reads: the catalog's copy falls behind",
            symptom="prices edited in the monolith do not show through the catalog; `strangler shift products "
                    "--to catalog --weight 10` is refused",
            hints=("What does `strangler status` (or `strangler cdc status`) say about the stream's lag and events/s?",
                   "The process is alive (`strangler ps`), yet its metrics file stopped moving: look at its state with `ps -o pid,stat,cmd -p <pid>`.",
                   "State T means stopped by a signal: `kill -CONT <pid>` (or restart the stack), then watch the lag fall."),
            inject=stale_inject, check=stale_check, undo=stale_undo),
    BreakIt(name="half-dual-write", title="A half-failed dual write",
            symptom="one product shows a different price through the catalog than through the monolith",
            hints=("Which command compares the two databases row by row?",
                   "`strangler verify catalog` lists the differing keys and ends with the command that repairs them.",
                   "`strangler verify catalog --repair` re-copies the differing rows through the running stream."),
            inject=dual_inject, check=dual_check, undo=dual_undo),
    BreakIt(name="id-collision", title="An id collision waiting to happen",
            symptom="nothing yet — until the catalog creates a product, which arrives at the monolith as an update of an unrelated one",
            hints=("Who hands out product ids on each side, and from which range?",
                   "`strangler ids show` compares each side's allocator with its block.",
                   "`strangler ids reserve --side catalog` moves the catalog's allocator back into its block."),
            inject=ids_inject, check=ids_check, undo=ids_undo),
    BreakIt(name="failing-service", title="A failing service (no restart)",
            symptom="errors on /api/products for the users the catalog serves; a canary rolls back",
            hints=("`strangler status`: which backend's error rate rose, and is its breaker open?",
                   "The catalog has a fault switch (extracted/catalog/README.md): GET /_catalog/fail-rate shows it.",
                   "curl -X PUT -H \"Authorization: Bearer $(cat .strangler/admin-token)\" -d '{\"rate\": 0}' http://127.0.0.1:8001/_catalog/fail-rate"),
            inject=fail_inject, check=fail_check, undo=fail_undo),
    BreakIt(name="cookie-mixup", title="A cookie/session mix-up",
            symptom="staff price edits through the router fail 401 at the catalog; every logged-in user lands in the same few cohorts",
            hints=("Which cookie does the router read for cohorts and identity, and which does the monolith set? (log in, look at the browser's cookies)",
                   "`strangler routes diff` shows what changed in routes.yaml; Django's SESSION_COOKIE_NAME defaults to sessionid.",
                   f"Put `cookie: sessionid` back wherever routes.yaml says `cookie: {WRONG_COOKIE}`; the router reloads the file by itself."),
            inject=cookie_inject, check=cookie_check, undo=cookie_undo),
    BreakIt(name="stalled-slot", title="A stalled replication slot pins WAL",
            symptom="the monolith's PostgreSQL disk fills up; `strangler status` warns about a slot's retained WAL",
            hints=("`strangler cdc status` shows each stream's slot health; is there a slot no stream owns?",
                   "SELECT slot_name, active, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) FROM pg_replication_slots;",
                   f"SELECT pg_drop_replication_slot('{STALLED_SLOT}'); — only after checking no consumer needs it."),
            inject=slot_inject, check=slot_check, undo=slot_undo, real_only=True),
)}


def get(name: str) -> BreakIt:
    if name not in BREAKITS:
        raise NotFound(f"no break-it {name!r}; there are: {', '.join(BREAKITS)}")
    return BREAKITS[name]


def _record_file(name: str) -> Path:
    return root() / "break" / f"{name}.json"


def records() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((root() / "break").glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def inject(b: BreakIt, env: Env) -> dict[str, Any]:
    if _record_file(b.name).exists():
        raise WorkshopError(f"{b.name} is already injected; `strangler break check {b.name}` or `strangler break undo {b.name}`")
    record = {"injected": time.time(), **b.inject(env)}
    path = _record_file(b.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def undo(b: BreakIt, env: Env) -> bool:
    """Take the fault back out (False: it was not injected)."""
    path = _record_file(b.name)
    if not path.exists():
        return False
    b.undo(env, json.loads(path.read_text()))
    path.unlink()
    return True


def forget(name: str) -> None:
    _record_file(name).unlink(missing_ok=True)
