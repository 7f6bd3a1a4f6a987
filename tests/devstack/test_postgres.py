import psycopg2
import pytest

from devstack import PostgresServer, ServiceUnavailable
from devstack.postgres import ENV_BINDIR

pytestmark = pytest.mark.postgres


def test_server_has_logical_decoding_on_loopback(pg_server: PostgresServer, pg_dsn: str) -> None:
    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True  # a slot cannot be created in a transaction that has written
    with conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        assert cur.fetchone() == ("logical",)
        cur.execute("SELECT inet_server_addr()::text")
        assert cur.fetchone()[0].startswith("127.0.0.1")
        cur.execute("CREATE TABLE t (id int primary key)")
        cur.execute("SELECT pg_create_logical_replication_slot('probe', 'pgoutput')")
        cur.execute("SELECT pg_drop_replication_slot('probe')")
    conn.close()


def test_databases_are_isolated(pg_server: PostgresServer) -> None:
    a = pg_server.create_database("iso_a")
    b = pg_server.create_database("iso_b")
    with psycopg2.connect(a) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE only_in_a (x int)")
    with psycopg2.connect(b) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('only_in_a')")
        assert cur.fetchone() == (None,)


def test_missing_binaries_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("STRANGLER_PG_DSN", raising=False)
    monkeypatch.setenv(ENV_BINDIR, str(tmp_path))
    with pytest.raises(ServiceUnavailable, match="no initdb"):
        PostgresServer().start()


def test_stop_removes_the_data_folder(pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("STRANGLER_PG_DSN", raising=False)
    server = PostgresServer().start()  # a second, private server
    datadir = server.datadir
    assert os.path.isdir(datadir)
    server.stop()
    assert not os.path.exists(datadir)


def test_a_killed_owner_leaves_no_server_behind(pg_server: PostgresServer, tmp_path) -> None:
    """kill -9 of the process that started a server: the server stops and its folder goes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, time\n"
        "os.environ.pop('STRANGLER_PG_DSN', None)\n"
        "from devstack import PostgresServer\n"
        "s = PostgresServer().start()\n"
        "print(s.port, s._root, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port, root = owner.stdout.readline().split()  # type: ignore[union-attr]
        psycopg2.connect(f"postgresql://strangler@127.0.0.1:{port}/postgres").close()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 30
    while os.path.exists(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(root)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(f"postgresql://strangler@127.0.0.1:{port}/postgres", connect_timeout=2).close()
