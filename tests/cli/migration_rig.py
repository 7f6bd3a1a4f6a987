"""A migration engineer's workbench for the end-to-end tests of step 4 (test_ownership_e2e.py).

Everything runs as the real processes through the CLI: `strangler up --detach` (monolith,
catalog service, router, both CDC streams; `--real` for PostgreSQL + Kafka), `strangler
traffic`, `shift`/`canary`, `own`, `verify`. Beside them:

- a `Killer` thread plays the crash: at seeded-random moments it `kill -9`s one stream
  process and restarts it the way the stack's supervisor starts it (same argv and
  environment, pid file included, so `strangler down` stops it);
- a write log: per-row AFTER triggers on the synced tables of both databases record every
  row write with its writer (the CDC sink of the stream feeding that database, or "app"),
  old and new values; `check_log` turns it into the exactly-once / no-echo / no-lost-update /
  unique-id verdicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack import free_port
from stack.model import Process
from stack.supervisor import Supervisor

REPO = Path(__file__).resolve().parents[2]
STREAMS = ("catalog", "catalog_reverse")
FEEDS = {"monolith": "catalog_reverse", "catalog": "catalog"}  # the sink writing into each side
OTHER = {"monolith": "catalog", "catalog": "monolith"}
LOG = "e2e_write_log"

# per side: table -> (logical name, name column, price column, its unit, stock column)
TRACKED: dict[str, dict[str, tuple[str, str | None, str, str, str | None]]] = {
    "monolith": {"catalog_category": ("category", "name", "", "", None),
                 "catalog_product": ("product", "name", "price", "decimal", "stock_count"),
                 "catalog_pricehistory": ("price_change", None, "new_price", "decimal", None)},
    "catalog": {"categories": ("category", "name", "", "", None),
                "products": ("product", "name", "price_cents", "cents", "stock_count"),
                "price_changes": ("price_change", None, "new_price_cents", "cents", None)},
}
COLUMNS = ("name", "price", "stock")


# -- the workspace -----------------------------------------------------------------------------
@dataclass
class Rig:
    root: Path
    real: bool = False
    kafka_bootstrap: str | None = None
    router_port: int = 0
    env: dict[str, str] = field(default_factory=dict)  # what every CLI call gets
    stream_env: dict[str, dict[str, str]] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.root / ".strangler"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def prepare(self, *, writes: bool = True) -> None:
        """The repository's routes, streams and ownership files, on free loopback ports."""
        self.router_port = free_port()
        routes = yaml.safe_load((REPO / "routes.yaml").read_text())
        for up in routes["upstreams"].values():
            up["url"] = f"http://127.0.0.1:{free_port()}"
        if not writes:  # the shape of the table before issue 11 (a hand check of the regression)
            for r in routes["routes"]:
                r.pop("writes", None)
        (self.root / "routes.yaml").write_text(yaml.safe_dump(routes, sort_keys=False))
        streams = yaml.safe_load((REPO / "streams.yaml").read_text())
        if self.kafka_bootstrap:  # topics of this run only (the broker is the session's)
            tag = os.urandom(3).hex()
            for name, spec in streams["streams"].items():
                spec["transport"] = {"kind": "kafka", "bootstrap": self.kafka_bootstrap,
                                     "topic_prefix": f"e2e{tag}{name}"}
        (self.root / "streams.yaml").write_text(yaml.safe_dump(streams, sort_keys=False))
        (self.root / "ownership.yaml").write_text((REPO / "ownership.yaml").read_text())
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("STRANGLER_") and k not in ("MONOLITH_DATABASE_URL", "CATALOG_DATABASE_URL")}
        env.update(STRANGLER_STATE_DIR=str(self.state), PYTHONPATH=str(REPO), COLUMNS="200",
                   STRANGLER_OWNERSHIP=str(self.root / "ownership.yaml"))
        if self.kafka_bootstrap:
            env["STRANGLER_KAFKA_BOOTSTRAP"] = self.kafka_bootstrap
        self.env = env

    def cli(self, *args: str, check: int | None = 0, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`strangler ARGS` as its own process, from the workspace."""
        proc = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check is not None:
            assert proc.returncode == check, (f"`strangler {' '.join(args)}` exited {proc.returncode}:\n"
                                              f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def up(self) -> None:
        """`strangler up --detach` with both streams; then the CLI sees what the streams see."""
        self.cli("up", "--detach", "--port", str(self.router_port), *(("--real",) if self.real else ()),
                 timeout=300)
        for r in self.supervisor().running():
            self.started.append(r.pid)
        for stream in STREAMS:
            self.stream_env[stream] = environ_of(self.pid_of(stream))
        keep = ("MONOLITH_DATABASE_URL", "CATALOG_DATABASE_URL", "STRANGLER_STREAMS")
        self.env.update({k: self.stream_env["catalog"][k] for k in keep if k in self.stream_env["catalog"]})
        self.wait_streaming(*STREAMS)
        # "streaming" is the capture's state; over Kafka the apply may still be copying: the
        # initial copy lands before anything the test records (the write log) starts
        self.drained(*STREAMS, copied=True)

    def down(self) -> None:
        if not self.env:
            return
        self.cli("down", check=None, timeout=60)
        left = [pid for pid in self.started if _alive(pid)]
        for pid in left:  # never leak a process, whatever failed (our own pids, still alive)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in self.started:  # a restarted stream is our child: reap it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        self.started = []
        assert not left, f"processes left running after `strangler down`: {left}"

    def supervisor(self) -> Supervisor:
        return Supervisor(run_dir=self.state / "run", log_dir=self.state / "logs")

    def pid_of(self, stream: str) -> int:
        return int(json.loads((self.state / "run" / f"{process_name(stream)}.json").read_text())["pid"])

    @property
    def streams_file(self) -> str:
        return self.env.get("STRANGLER_STREAMS", str(self.root / "streams.yaml"))

    def url_of(self, side: str) -> str:
        return self.env["MONOLITH_DATABASE_URL" if side == "monolith" else "CATALOG_DATABASE_URL"]

    def metrics(self, stream: str) -> dict[str, Any]:
        for name in (stream, f"{stream}.apply"):
            with contextlib.suppress(OSError, ValueError):
                return dict(json.loads((self.state / "cdc" / f"{name}.json").read_text()))
        return {}

    def wait_streaming(self, *streams: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for s in streams:
            while True:
                doc = self.metrics(s)
                if doc.get("state") == "streaming" and _alive(doc.get("pid")):
                    break
                assert time.monotonic() < deadline, f"stream {s} is not streaming: {doc}\n{self.log(s)}"
                time.sleep(0.1)

    def log(self, stream: str) -> str:
        return self.process_log(process_name(stream))

    def process_log(self, name: str, *, errors_only: bool = False) -> str:
        """The tail of a supervised process's log; `errors_only`: from its first traceback."""
        path = self.state / "logs" / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if errors_only:
            at = text.find("Traceback")
            text = text[at:] if at >= 0 else ""
        return text[-3000:]

    def drained(self, *streams: str, timeout: float = 90, copied: bool = False) -> None:
        """Every change committed so far is applied: a marker through each stream; `copied`:
        and every table's initial copy is done."""
        from cdc import config, drain

        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            sf = config.load(self.streams_file)
            for s in streams:
                cfg = sf.stream(s)
                assert drain.wait_applied_to(cfg, drain.mark(cfg), timeout=timeout), \
                    f"stream {s} did not catch up in {timeout:.0f}s:\n{self.log(s)}"
                tables = [m.source for m in cfg.tables] if copied and cfg.initial != "none" else []
                deadline = time.monotonic() + timeout
                while tables and not drain.snapshot_done(cfg, tables):
                    assert time.monotonic() < deadline, f"stream {s}: copy not done:\n{self.log(s)}"
                    time.sleep(0.1)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def verify(self, stream: str) -> dict[str, Any]:
        proc = self.cli("verify", stream, "--json", "--streams", self.streams_file, check=None)
        doc = dict(json.loads(proc.stdout))
        doc["exit"] = proc.returncode
        doc["differing"] = sum(len(t.get(k) or []) for t in doc.get("tables", [])
                               for k in ("missing", "extra", "different"))
        return doc

    def retried(self, *args: str, attempts: int = 6, ok: Iterable[int] = (0,)) -> subprocess.CompletedProcess[str]:
        """A command an engineer runs again when a check is not met yet (exit 3: a stream
        restarting, in-flight rows) or a flip failed and was undone (exit 1, nothing lost):
        after the streams stream again. The last attempt must succeed."""
        proc = None
        for _ in range(attempts):
            proc = self.cli(*args, check=None)
            retry = proc.returncode == 3 or (proc.returncode == 1 and "was undone" in proc.stderr)
            if proc.returncode in ok or not retry:
                break
            self.wait_streaming(*STREAMS)
            time.sleep(0.5)
        assert proc is not None and proc.returncode in ok, (
            f"`strangler {' '.join(args)}` exited {proc and proc.returncode}:\n"
            f"{proc and proc.stdout[-2000:]}\n{proc and proc.stderr[-3000:]}")
        return proc


def process_name(stream: str) -> str:
    return "cdc-" + stream.replace("_", "-")


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _alive(pid: Any) -> bool:
    from stack.supervisor import pid_alive

    try:
        return pid_alive(int(pid))
    except (TypeError, ValueError):
        return False


# -- traffic -----------------------------------------------------------------------------------
class Traffic:
    """`strangler traffic` through the router until stopped (SIGINT); its JSON summary."""

    def __init__(self, rig: Rig, *, rate: float, seed: int, staff_writes: float) -> None:
        self.rig = rig
        self.out = rig.root / "traffic.json"
        argv = [sys.executable, "-m", "cli.main", "traffic", rig.url, "--rate", f"{rate:g}",
                "--duration", "0", "--seed", str(seed), "--staff", "2", "--customers", "4",
                "--anonymous", "2", "--staff-writes", f"{staff_writes:g}", "--json"]
        with self.out.open("wb") as out, (rig.root / "traffic.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, cwd=rig.root, env=rig.env, stdout=out, stderr=log,
                                         start_new_session=True)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)
        return dict(json.loads(self.out.read_text()))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# -- kill -9 -----------------------------------------------------------------------------------
class Killer:
    """At seeded-random moments `kill -9` one stream process, then restart it as the stack's
    supervisor does (`strangler cdc run STREAM`, the same environment)."""

    def __init__(self, rig: Rig, *, seed: int, plan: list[str], every: tuple[float, float]) -> None:
        self.rig, self.rng, self.every = rig, random.Random(seed), every
        self.plan = list(plan)  # which stream each kill hits, in order
        self.kills: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # failing anyway: no more kills
            self._stop.set()
        self._thread.join(120)  # otherwise every planned kill happens

    def _run(self) -> None:
        try:
            for stream in self.plan:
                if self._stop.wait(self.rng.uniform(*self.every)):
                    return
                self.kill_and_restart(stream)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def kill_and_restart(self, stream: str) -> None:
        rig = self.rig
        pid = rig.pid_of(stream)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the stream and anything it started
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # a restarted stream is our child: reap it
        while _alive(pid):
            time.sleep(0.01)
        self.kills.append(stream)
        info = json.loads((rig.state / "run" / f"{process_name(stream)}.json").read_text())
        rig.supervisor().start_more(Process(name=process_name(stream), role="stream", cwd=str(rig.root),
                                            argv=tuple(info["argv"]), env=rig.stream_env[stream],
                                            settle=0.2))
        rig.started.append(rig.pid_of(stream))


# -- the write log -----------------------------------------------------------------------------
def install_write_log(rig: Rig) -> None:
    """AFTER row triggers on both sides' synced tables: every write, its writer, old and new."""
    for side in ("monolith", "catalog"):
        url = rig.url_of(side)
        if url.startswith("sqlite"):
            _sqlite_log(url.split("///", 1)[1], side)
        else:
            _pg_log(url, side)


LOG_COLUMNS = "tbl, k, op, writer, name, old_name, price, old_price, stock, old_stock"


def _values(spec: tuple[str, str | None, str, str, str | None], op: str, writer: str, *, pg: bool) -> str:
    """The VALUES of one log row for a trigger on `op` (i, u, d) of a table tracked as `spec`."""
    logical, name, price, unit, stock = spec
    row = "OLD" if op == "d" else "NEW"

    def col(c: str | None, r: str, money: bool = False) -> str:
        if not c:
            return "NULL"
        if money and unit == "decimal":  # the monolith's decimals, compared in cents
            return f"round({r}.{c} * 100)::bigint" if pg else f"CAST(ROUND({r}.{c} * 100) AS INTEGER)"
        return f"{r}.{c}"

    old = (lambda c, money=False: col(c, "OLD", money)) if op == "u" else (lambda c, money=False: "NULL")
    return ", ".join([f"'{logical}'", f"{row}.id", f"'{op}'", writer, col(name, row), old(name),
                      col(price, row, True), old(price, True), col(stock, row), old(stock)])


def _sqlite_log(path: str, side: str) -> None:
    stmts = ["CREATE TABLE IF NOT EXISTS strangler_cdc_origin (stream TEXT NOT NULL)",
             f"CREATE TABLE {LOG} (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, k INTEGER, op TEXT, "
             "writer TEXT, name TEXT, old_name TEXT, price INTEGER, old_price INTEGER, stock INTEGER, "
             "old_stock INTEGER)"]
    writer = "COALESCE((SELECT stream FROM strangler_cdc_origin LIMIT 1), 'app')"  # the sink's marker
    for table, spec in TRACKED[side].items():
        for op, event in (("i", "INSERT"), ("u", "UPDATE"), ("d", "DELETE")):
            stmts.append(f"CREATE TRIGGER e2e_log_{table}_{op} AFTER {event} ON {table} BEGIN "
                         f"INSERT INTO {LOG} ({LOG_COLUMNS}) VALUES ({_values(spec, op, writer, pg=False)}); END")
    conn = sqlite3.connect(path, timeout=60)
    try:
        with conn:
            for s in stmts:
                conn.execute(s)
    finally:
        conn.close()


def _pg_log(url: str, side: str) -> None:
    import psycopg2

    from cdc.sources.postgres import libpq_dsn

    stmts = [f"CREATE TABLE {LOG} (seq bigserial PRIMARY KEY, tbl text, k bigint, op text, writer text, "
             "name text, old_name text, price bigint, old_price bigint, stock bigint, old_stock bigint)"]
    # the sink's session runs under its stream's replication origin (cdc/origin.py)
    writer = f"CASE WHEN pg_replication_origin_session_is_setup() THEN '{FEEDS[side]}' ELSE 'app' END"
    for table, spec in TRACKED[side].items():
        ins = {op: f"INSERT INTO {LOG} ({LOG_COLUMNS}) VALUES ({_values(spec, op, writer, pg=True)});"
               for op in "iud"}
        stmts.append(f"""CREATE FUNCTION e2e_log_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN {ins['i']}
  ELSIF TG_OP = 'UPDATE' THEN {ins['u']}
  ELSE {ins['d']}
  END IF;
  RETURN NULL;
END $$""")
        stmts.append(f"CREATE TRIGGER e2e_log AFTER INSERT OR UPDATE OR DELETE ON {table} "
                     f"FOR EACH ROW EXECUTE FUNCTION e2e_log_{table}()")
    conn = psycopg2.connect(libpq_dsn(url))
    try:
        with conn, conn.cursor() as cur:
            for s in stmts:
                cur.execute(s)
    finally:
        conn.close()


def query(url: str, sql: str) -> list[dict[str, Any]]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1], timeout=60)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql)]
        finally:
            conn.close()
    import psycopg2
    import psycopg2.extras

    from cdc.sources.postgres import libpq_dsn

    pg = psycopg2.connect(libpq_dsn(url))
    try:
        with pg.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql)
            return [dict(r) for r in cur.fetchall()]
    finally:
        pg.close()


def app_write(url: str, sql: str) -> str | None:
    """An application's direct write (no sink marker, no origin); the database's refusal."""
    if url.startswith("sqlite"):
        try:
            conn = sqlite3.connect(url.split("///", 1)[1], timeout=60)
            try:
                with conn:
                    conn.execute(sql)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None
    import psycopg2

    from cdc.sources.postgres import libpq_dsn

    pg = psycopg2.connect(libpq_dsn(url))
    try:
        with pg, pg.cursor() as cur:
            cur.execute(sql)
    except psycopg2.Error as exc:
        return str(exc)
    finally:
        pg.close()
    return None


def read_log(rig: Rig) -> dict[str, list[dict[str, Any]]]:
    return {side: query(rig.url_of(side), f"SELECT * FROM {LOG} ORDER BY seq") for side in ("monolith", "catalog")}


def _changed(row: dict[str, Any], col: str) -> bool:
    if row["op"] == "i":
        return row[col] is not None
    return row["op"] == "u" and row[col] != row[f"old_{col}"]


def check_log(log: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The verdicts of the write log; every list empty (and counts as noted) when all is well.

    exactly_once  per key, the other side's sink wrote no more rows than this side's
                  application did, and per column it changed no value to v more often than
                  the application did (a change applied twice, or a change bounced back, shows
                  up as a sink write with no application write behind it: an echo)
    lost_update   the final value of each tracked column is the last the owner wrote
    ids           ids the two sides' applications inserted never meet
    """
    problems: dict[str, list[Any]] = {"exactly_once": [], "foreign": []}
    counts: dict[str, Any] = {}
    for side in ("monolith", "catalog"):
        app = [r for r in log[side] if r["writer"] == "app"]
        sink = [r for r in log[OTHER[side]] if r["writer"] == FEEDS[OTHER[side]]]
        bad = [r for r in log[OTHER[side]] if r["writer"] not in ("app", FEEDS[OTHER[side]])]
        problems["foreign"] += bad  # a writer that should never write there
        counts[f"{side}_app_writes"] = len(app)
        counts[f"{side}_to_{OTHER[side]}_applied"] = len(sink)
        by_key_app = Counter((r["tbl"], r["k"]) for r in app)
        by_key_sink = Counter((r["tbl"], r["k"]) for r in sink)
        for key, n in by_key_sink.items():
            if n > by_key_app[key]:
                problems["exactly_once"].append({"direction": f"{side}→{OTHER[side]}", "key": key,
                                                 "applied": n, "written": by_key_app[key]})
        for col in COLUMNS:
            app_values = Counter((r["tbl"], r["k"], r[col]) for r in app if _changed(r, col))
            sink_values = Counter((r["tbl"], r["k"], r[col]) for r in sink if _changed(r, col))
            for key, n in sink_values.items():
                if n > app_values[key]:
                    problems["exactly_once"].append({"direction": f"{side}→{OTHER[side]}", "column": col,
                                                     "key_value": key, "applied": n,
                                                     "written": app_values[key]})
    problems["lost_update"] = []
    last: dict[tuple[str, int, str], Any] = {}
    for side in ("monolith", "catalog"):  # the monolith owned first, then the catalog
        for r in log[side]:
            if r["writer"] != "app":
                continue
            for col in COLUMNS:
                if _changed(r, col):
                    last[(r["tbl"], r["k"], col)] = r[col]
    final: dict[str, dict[tuple[str, int, str], Any]] = {}
    for side in ("monolith", "catalog"):
        final[side] = {}
        for r in log[side]:  # the row's last logged state on this side
            for col in COLUMNS:
                final[side][(r["tbl"], r["k"], col)] = None if r["op"] == "d" else r[col]
    for key, value in last.items():
        for side in ("monolith", "catalog"):
            if final[side].get(key) != value:
                problems["lost_update"].append({"key": key, "side": side, "last_written": value,
                                                "final": final[side].get(key)})
    inserted = {side: {(r["tbl"], r["k"]) for r in log[side] if r["writer"] == "app" and r["op"] == "i"}
                for side in ("monolith", "catalog")}
    problems["id_collisions"] = sorted(inserted["monolith"] & inserted["catalog"])
    counts["inserted"] = {side: sorted(keys) for side, keys in inserted.items()}
    return {"problems": problems, "counts": counts}


class Readers:
    """Product reads from users with fixed session keys (`sessionid=reader<i>`): their cohorts
    are fixed, so every canary step sees candidate traffic, run after run."""

    def __init__(self, url: str, *, users: int = 40, rate: float = 15.0) -> None:
        self.url, self.users, self.rate = url, users, rate
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readers", daemon=True)

    def __enter__(self) -> Readers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                user = f"reader{self.sent % self.users}"
                try:
                    r = client.get("/api/products/", headers={"cookie": f"sessionid={user}"})
                    self.failed += r.status_code >= 400
                except httpx.HTTPError:
                    self.failed += 1
                self.sent += 1
                self._stop.wait(1 / self.rate)
