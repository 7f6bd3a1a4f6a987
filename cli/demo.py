"""`strangler demo`: the legacy shop under traffic, end to end, on this machine.

Until the seven-step walkthrough exists, this is what `make demo` shows: a fresh SQLite
shop under ``.strangler/`` is migrated and seeded, served by uvicorn on a free loopback
port, driven by `strangler traffic` for a while, and stopped. Exit 1 if any request failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.localshop import STATE_DIR, LocalShop, ShopError
from cli.traffic import TrafficConfig, TrafficError, run_traffic
from cli.traffic_report import render_table


def demo(
    duration: Annotated[float, typer.Option(help="Seconds of traffic.")] = 20.0,
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 20.0,
    size: Annotated[str, typer.Option(help="Seed size: small, medium or large.")] = "small",
    state_dir: Annotated[Path, typer.Option(help="Where the shop's SQLite file and log go.")] = STATE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Seed a local shop, serve it, drive traffic at it, print the summary, stop everything."""
    if duration <= 0 or rate <= 0:
        raise typer.BadParameter("--duration and --rate must be > 0")
    shop = LocalShop(sqlite_path=state_dir / "demo-shop.sqlite3",
                     log_path=state_dir / "demo-shop.log")
    try:
        print(f"seeding a {size} shop in {shop.sqlite_path} ...", file=sys.stderr)
        shop.prepare(size=size)
        print(f"serving it on {shop.base_url} (uvicorn; log: {shop.log_path}) ...", file=sys.stderr)
        shop.start()
        print(f"driving traffic for {duration:g}s at {rate:g}/s ...", file=sys.stderr)
        summary = run_traffic(TrafficConfig(base_url=shop.base_url, rate=rate, duration=duration))
    except (ShopError, TrafficError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        raise typer.Exit(1) from None
    finally:
        shop.stop()
    print(json.dumps(summary) if as_json else render_table(summary))
    if not as_json:
        verdict = "zero failed requests" if summary["ok"] else f"{summary['errors']} failed request(s)"
        print(f"\ndemo finished: {summary['requests']} requests, {verdict}; the shop is stopped.",
              file=sys.stderr)
    raise typer.Exit(0 if summary["ok"] else 1)
