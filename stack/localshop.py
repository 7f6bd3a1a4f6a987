"""Run the legacy shop locally: migrate, seed, serve under uvicorn, stop — as subprocesses.

The shop is driven through ``python -m monolith`` in child processes, so the CLI never
configures Django in its own process (and the database choice is just environment):
``DATABASE_URL`` for PostgreSQL, else a SQLite file. Used by `strangler demo`, tests and
benchmarks.

    with LocalShop(sqlite_path=".strangler/demo-shop.sqlite3") as shop:
        shop.prepare(size="small")
        shop.start()
        print(shop.base_url)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".strangler"


class ShopError(Exception):
    """The shop could not be prepared or started; the message says which step and why."""


class LocalShop:
    def __init__(self, *, sqlite_path: str | os.PathLike[str] | None = None,
                 database_url: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 workers: int = 1, log_path: str | os.PathLike[str] | None = None,
                 fast_passwords: bool = True) -> None:
        if sqlite_path is None and database_url is None:
            raise ValueError("give sqlite_path (a file) or database_url (postgresql://...)")
        if workers < 1:
            raise ValueError(f"workers={workers}: at least one uvicorn worker is needed")
        self.sqlite_path = Path(sqlite_path) if sqlite_path is not None else None
        self.database_url = database_url
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.log_path = Path(log_path) if log_path else STATE_DIR / f"shop-{self.port}.log"
        self.fast_passwords = fast_passwords
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MONOLITH_SQLITE_PATH")}
        env["DJANGO_SETTINGS_MODULE"] = "monolith.settings"
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        else:
            assert self.sqlite_path is not None
            env["MONOLITH_SQLITE_PATH"] = str(self.sqlite_path)
        if self.fast_passwords:
            env["MONOLITH_FAST_PASSWORDS"] = "1"
        return env

    def manage(self, *args: str, timeout: float = 600) -> str:
        """Run one ``python -m monolith`` command; its stdout, or ShopError with its stderr."""
        proc = subprocess.run([sys.executable, "-m", "monolith", *args], env=self.env(),
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if proc.returncode != 0:
            raise ShopError(f"`python -m monolith {' '.join(args)}` failed "
                            f"(exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
        return proc.stdout

    def prepare(self, *, size: str = "small", fresh: bool = True) -> None:
        """Create the schema and seed it (a fresh SQLite file unless ``fresh=False``)."""
        if self.sqlite_path is not None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            if fresh:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("seed", "--size", size, *(["--reset"] if not fresh or self.database_url else []))

    def start(self, *, ready_timeout: float = 60.0) -> str:
        """Serve on the port under uvicorn; returns once it answers, with its base URL."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop via the process)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monolith", "serve", "--host", self.host, "--port",
             str(self.port), "--workers", str(self.workers)],
            env=self.env(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ShopError(f"the shop server exited with {self.process.returncode}; "
                                f"see {self.log_path}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/api/categories/?page_size=1", timeout=2).status_code == 200:
                    return self.base_url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ShopError(f"the shop did not answer on {self.base_url} within {ready_timeout:g}s; "
                        f"see {self.log_path}")

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> LocalShop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
