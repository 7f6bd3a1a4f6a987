"""Each break-it: injected, its check says "not fixed" (and names what is wrong); fixed (or
undone), the check passes. On SQLite and in-process; the stalled slot on devstack PostgreSQL."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from workshop import breakits, checks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRANGLER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("STRANGLER_OWNERSHIP", raising=False)


def sqlite_shop(tmp_path: Path) -> Path:
    """A monolith and a catalog on SQLite with the stream `catalog` between them, copied."""
    mono, cat = tmp_path / "monolith.sqlite3", tmp_path / "catalog.sqlite3"
    with sqlite3.connect(mono) as c:
        c.execute("CREATE TABLE catalog_product (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
                  "price DECIMAL(10, 2) NOT NULL)")
        c.executemany("INSERT INTO catalog_product (name, price) VALUES (?, ?)", [("mug", "10.00"), ("pot", "20.50")])
    with sqlite3.connect(cat) as c:
        c.execute("CREATE TABLE products (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, price_cents INTEGER NOT NULL)")
        c.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('products', 999999999)")  # the catalog's block
    streams = tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump({"version": 1, "streams": {"catalog": {
        "source": {"url": f"sqlite:///{mono}"}, "target": {"url": f"sqlite:///{cat}"},
        "tables": {"catalog_product": {"target": "products", "columns": {
            "id": "id", "name": "name", "price": {"to": "price_cents", "convert": "decimal_to_cents"}}}}}}}))
    from cdc import config

    checks.run_stream(config.load(streams).stream("catalog"))
    return streams


def cycle(name: str, env: breakits.Env, fix: Callable[[], None] | None = None, says: str = "") -> None:
    b = breakits.get(name)
    assert b.check(env).passed
    breakits.inject(b, env)
    broken = b.check(env)
    assert not broken.passed
    assert says in str(broken.problems[0])
    if fix is None:
        assert breakits.undo(b, env)
    else:
        fix()
    assert b.check(env).passed


def test_there_are_at_least_five_break_its_with_hints() -> None:
    assert len(breakits.BREAKITS) >= 5
    assert all(len(b.hints) >= 2 for b in breakits.BREAKITS.values())


def test_half_dual_write_is_found_by_verify_and_undone(tmp_path: Path) -> None:
    env = breakits.Env(streams=sqlite_shop(tmp_path))
    cycle("half-dual-write", env, says="1 different")


def test_half_dual_write_fixed_by_copying_the_source_row(tmp_path: Path) -> None:
    env = breakits.Env(streams=sqlite_shop(tmp_path))

    def repair() -> None:  # what `verify --repair` brings about: the source's value in the copy
        with sqlite3.connect(tmp_path / "catalog.sqlite3") as c:
            c.execute("UPDATE products SET price_cents = 1000 WHERE id = 1")
    cycle("half-dual-write", env, fix=repair, says="keys [[1]]")


def test_id_collision_fixed_by_ids_reserve(tmp_path: Path) -> None:
    from cdc import ids
    from extracted.catalog.models import ID_BLOCK

    streams = sqlite_shop(tmp_path)
    env = breakits.Env(streams=streams)
    cycle("id-collision", env, fix=lambda: ids.prepare_owner(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", ["products"], ID_BLOCK),
          says="gets id 3")


def test_cookie_mixup_breaks_the_live_routes_file_and_undo_restores_it(tmp_path: Path) -> None:
    for name in ("routes.yaml", "ownership.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    env = breakits.Env(routes=tmp_path / "routes.yaml")
    before = env.routes.read_text()
    cycle("cookie-mixup", env, says="identity.cookie")
    assert env.routes.read_text() == before


def test_failing_service_through_the_catalog_fault_switch(tmp_path: Path) -> None:
    from extracted.catalog import Settings, create_app
    from tests.extracted.catalog.asgi import asgi_client

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'c.sqlite3'}", admin_token="tok"))
    with asgi_client(app) as client:
        env = breakits.Env(catalog_url="http://testserver", admin_token="tok", http=lambda: _borrowed(client))
        cycle("failing-service", env, says="fails 50%")


class _borrowed:  # the test's client, not closed by `with env.client()`
    def __init__(self, client: object) -> None:
        self.client = client

    def __enter__(self) -> object:
        return self.client

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def fake_stream(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process that keeps the stream's metrics file fresh, as `strangler cdc run` does."""
    folder = tmp_path / "state" / "cdc"
    folder.mkdir(parents=True)
    code = textwrap.dedent(f"""
        import json, os, time
        while True:
            doc = {{"stream": "catalog", "state": "streaming", "pid": os.getpid(), "lag_ms": 3.0, "updated": time.time()}}
            open({str(folder / '.tmp')!r}, "w").write(json.dumps(doc))
            os.replace({str(folder / '.tmp')!r}, {str(folder / 'catalog.json')!r})
            time.sleep(0.05)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while not (folder / "catalog.json").exists():
        assert time.monotonic() < deadline, "the fake stream never wrote its metrics"
        time.sleep(0.02)
    yield proc
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait()


def test_stale_reads_stop_the_stream_and_the_read_gate_refuses(fake_stream: subprocess.Popen[bytes]) -> None:
    env = breakits.Env(max_lag=0.5)
    b = breakits.get("stale-reads")
    assert b.check(env).passed
    breakits.inject(b, env)
    deadline = time.monotonic() + 15  # the metrics file counts as stale after 5 s
    while b.check(env).passed:
        assert time.monotonic() < deadline, "the stopped stream never looked behind"
        time.sleep(0.2)
    assert "read gate refuses" in str(b.check(env).problems[0])
    breakits.undo(b, env)  # kill -CONT, what hint 3 says
    deadline = time.monotonic() + 10
    while not b.check(env).passed:
        assert time.monotonic() < deadline, "the resumed stream never caught up"
        time.sleep(0.05)


def test_unknown_break_it_and_double_inject(tmp_path: Path) -> None:
    from workshop.errors import NotFound, WorkshopError

    with pytest.raises(NotFound):
        breakits.get("nope")
    env = breakits.Env(streams=sqlite_shop(tmp_path))
    breakits.inject(breakits.get("id-collision"), env)
    with pytest.raises(WorkshopError, match="already injected"):
        breakits.inject(breakits.get("id-collision"), env)


@pytest.mark.slow
@pytest.mark.postgres
def test_stalled_slot_pins_wal_until_dropped(pg_dsn: str, tmp_path: Path) -> None:
    streams = tmp_path / "streams.yaml"
    streams.write_text(yaml.safe_dump({"version": 1, "streams": {"catalog": {
        "source": {"url": pg_dsn}, "target": {"url": f"sqlite:///{tmp_path / 'c.sqlite3'}"},
        "tables": {"t": {"target": "t"}}}}}))
    env = breakits.Env(streams=streams)
    b = breakits.get("stalled-slot")
    breakits.inject(b, env)
    broken = b.check(env)
    assert any(breakits.STALLED_SLOT in p.where and "MB of WAL" in p.what for p in broken.problems)
    assert breakits.undo(b, env)
    assert not [p for p in b.check(env).problems if breakits.STALLED_SLOT in p.where]
