"""`python -m extracted.catalog --host H --port P [--workers N]`: serve with uvicorn.

Production-style: no reload, no access log from uvicorn (the service writes its own JSON
access log with the request id), X-Forwarded-* believed only from `CATALOG_TRUSTED_PROXIES`
(default loopback, the router; `extracted/kit/proxies.py`).
`--migrate-only` applies the Alembic migrations and exits (for a deploy step or an init
container); otherwise they are applied at start unless `CATALOG_MIGRATE_ON_START=0`. Either way
an upgrade takes a lock every copy of the service shares (migrations.migration_lock), so
replicas and workers starting together apply them once.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

import uvicorn

from extracted.catalog import migrations
from extracted.catalog.app import LOGGER, create_app
from extracted.catalog.config import Settings
from extracted.kit import logs
from extracted.kit.db import make_engine
from extracted.kit.errors import ServiceError
from extracted.kit.metrics import MULTIPROC_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extracted.catalog", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--migrate-only", action="store_true", help="apply the migrations, print the revision, exit"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ServiceError as exc:
        print(f"catalog: {exc}", file=sys.stderr)
        return 2
    logs.configure(LOGGER, settings.log_level)
    if args.migrate_only:
        engine = make_engine(settings.database_url)
        try:
            migrations.upgrade(engine)
            print(migrations.current_revision(engine))
        finally:
            engine.dispose()
        return 0
    config = {
        "host": args.host,
        "port": args.port,
        "access_log": False,
        "log_config": None,  # keep logs.configure()'s JSON handlers
        "proxy_headers": False,  # TrustedProxyMiddleware decides, from the real peer address
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }
    if args.workers > 1:
        _multiprocess_metrics()
        uvicorn.run("extracted.catalog.__main__:app_from_env", factory=True, workers=args.workers, **config)
    else:
        uvicorn.run(create_app(settings), **config)  # type: ignore[arg-type]
    return 0


def _multiprocess_metrics() -> None:
    """Workers share their metrics through files (prometheus_client's multiprocess mode): a
    fresh folder per start, unless PROMETHEUS_MULTIPROC_DIR names one (emptied here)."""
    folder = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="catalog-metrics-")
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.db")):
        os.unlink(stale)  # a previous run's workers: not ours to sum
    os.environ[MULTIPROC_ENV] = folder  # inherited by the workers, read before they count


def app_from_env():  # type: ignore[no-untyped-def]
    """App factory for multi-worker runs (each worker builds its own app and engine)."""
    logs.configure(LOGGER, Settings.from_env().log_level)
    return create_app()


if __name__ == "__main__":
    sys.exit(main())
