"""A throwaway PostgreSQL server on loopback, for tests, benchmarks and `strangler up --real`.

It runs the machine's own server binaries (`initdb`, `pg_ctl`) in a temporary folder on a
free port with `wal_level=logical`, so change-data-capture works against it. `initdb`
refuses to run as root, so as root the server runs as an unprivileged user (``postgres``
if it exists, else ``nobody``). ``STRANGLER_PG_DSN`` points everything at an existing
server instead; then nothing is started or stopped.

    with PostgresServer() as pg:
        dsn = pg.create_database("shop")

``PostgresServer(settings={"max_slot_wal_keep_size": "1MB"})`` adds or overrides server
settings; such a server is always started here (a test that needs them cannot share one).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from devstack.errors import ServiceUnavailable
from devstack.ports import free_port

ENV_DSN = "STRANGLER_PG_DSN"
ENV_BINDIR = "STRANGLER_PG_BINDIR"
SUPERUSER = "strangler"

# Settings for a disposable cluster: logical decoding on, durability traded for speed
# (the data folder is deleted afterwards anyway).
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "32",
    "max_wal_senders": "32",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_wal_size": "2GB",
    "wal_sender_timeout": "60s",
    "logical_decoding_work_mem": "64MB",
}


# Runs beside a server this process started, in its own session: when this process dies
# without stopping the server (kill -9, a second Ctrl-C), it stops the server and removes
# the folder, so an interrupted test run leaves no postgres behind.
_REAPER = """
import os, shutil, signal, sys, time
parent, datadir, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
while os.getppid() == parent:
    time.sleep(1)
try:  # SIGQUIT to the postmaster is PostgreSQL's immediate shutdown
    with open(os.path.join(datadir, "postmaster.pid")) as fh:
        pid = int(fh.readline())
    os.kill(pid, signal.SIGQUIT)
    for _ in range(100):
        os.kill(pid, 0)
        time.sleep(0.1)
except (OSError, ValueError):
    pass
shutil.rmtree(root, ignore_errors=True)
"""


def find_bindir() -> str:
    """The folder holding `initdb` and `pg_ctl` (newest installed version first)."""
    explicit = os.environ.get(ENV_BINDIR)
    if explicit:
        if os.path.isfile(os.path.join(explicit, "initdb")):
            return explicit
        raise ServiceUnavailable(f"{ENV_BINDIR}={explicit} has no initdb in it")
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "initdb")):
            return folder
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise ServiceUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them "
        "(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@15`), "
        f"set {ENV_BINDIR} to their folder, or set {ENV_DSN} to an existing server "
        "with wal_level=logical."
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceUnavailable("running as root and no unprivileged user (postgres, nobody) exists")


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def drop_privileges() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop_privileges


def with_database(dsn: str, dbname: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@dataclass
class PostgresServer:
    """One PostgreSQL server: started here, or the one ``STRANGLER_PG_DSN`` names."""

    dsn: str = ""
    port: int = 0
    datadir: str = ""
    owned: bool = False
    outlive_owner: bool = False  # True: keep running after this process exits (`up --detach`)
    settings: dict[str, str] = field(default_factory=dict)  # on top of SERVER_SETTINGS
    _root: str = ""
    _reaper: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresServer:
        existing = os.environ.get(ENV_DSN)
        if existing and not self.settings:
            self.dsn = existing
            self.port = urlsplit(existing).port or 5432
            self._check_reachable()
            return self
        bindir = find_bindir()
        user = _unprivileged_user()
        self._root = tempfile.mkdtemp(prefix="strangler-pg-")
        self.datadir = os.path.join(self._root, "data")
        if user is not None:
            os.chown(self._root, user.pw_uid, user.pw_gid)
        self.port = free_port()
        run = _demote(user)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        self._run(
            [os.path.join(bindir, "initdb"), "-D", self.datadir, "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--no-sync"],
            run, env,
        )
        self._pg_ctl_start(bindir, run, env)
        self.owned = True
        try:
            self._reaper = None if self.outlive_owner else subprocess.Popen(
                [sys.executable, "-c", _REAPER, str(os.getpid()), self.datadir, self._root],
                start_new_session=True, cwd=self._root,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            self.stop()
            raise ServiceUnavailable(f"cannot start the server's watchdog: {exc}") from exc
        self.dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        self._check_reachable()
        return self

    def _pg_ctl_start(self, bindir: str, run: Callable[[], None] | None, env: dict[str, str]) -> None:
        options = " ".join(f"-c {k}={v}" for k, v in {**SERVER_SETTINGS, **self.settings}.items())
        options += f" -c listen_addresses=127.0.0.1 -p {self.port} -k {self._root}"
        self._run(
            [os.path.join(bindir, "pg_ctl"), "-D", self.datadir, "-l",
             os.path.join(self._root, "server.log"), "-o", options, "-w", "-t", "60", "start"],
            run, env,
        )

    def _run(self, argv: list[str], preexec: Callable[[], None] | None, env: dict[str, str]) -> None:
        proc = subprocess.run(argv, preexec_fn=preexec, env=env, cwd=self._root,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log = ""
            logfile = os.path.join(self._root, "server.log")
            if os.path.exists(logfile):
                with open(logfile) as fh:
                    log = fh.read()[-2000:]
            self.stop()
            raise ServiceUnavailable(
                f"`{' '.join(argv[:1])}` failed (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )

    def _check_reachable(self, timeout: float = 30.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.dsn, connect_timeout=3).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"PostgreSQL at {self.dsn} is not reachable: {exc}") from exc
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """Create (or recreate) database `name` and return its DSN."""
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return with_database(self.dsn, name)

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None
        if self.owned and self.datadir and os.path.isdir(self.datadir):
            bindir = find_bindir()
            subprocess.run(
                [os.path.join(bindir, "pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w", "stop"],
                preexec_fn=_demote(_unprivileged_user()), capture_output=True, check=False,
            )
        self.owned = False
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""

    def restart(self) -> None:
        """Stop and start the same cluster (same port, same data): for fault tests."""
        if not self.owned:
            raise ServiceUnavailable("cannot restart a server this process did not start")
        bindir = find_bindir()
        run = _demote(_unprivileged_user())
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        self._run([os.path.join(bindir, "pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "stop"], run, env)
        self._pg_ctl_start(bindir, run, env)
        self._check_reachable()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
