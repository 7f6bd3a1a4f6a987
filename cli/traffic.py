"""`strangler traffic`: drive the shop with `loadgen` and print its per-endpoint report."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Annotated

import typer

from loadgen.engine import SEED_PASSWORD, TrafficConfig, TrafficError, run_traffic
from loadgen.report import render_table


def traffic(
    base_url: Annotated[str, typer.Argument(help="The shop (or the router in front of it).",
                                            envvar="STRANGLER_TRAFFIC_URL")] = "http://127.0.0.1:8000",
    rate: Annotated[float, typer.Option(help="Requests started per second.")] = 20.0,
    duration: Annotated[float, typer.Option(help="Seconds to run; 0 = until Ctrl-C.")] = 30.0,
    anonymous: Annotated[int, typer.Option(help="Anonymous visitors.")] = 4,
    customers: Annotated[int, typer.Option(help="Logged-in customers (customer1..N).")] = 4,
    staff: Annotated[int, typer.Option(help="Staff users editing prices (staff1..N).")] = 1,
    password: Annotated[str, typer.Option(help="Password of the seeded users.",
                                          envvar="STRANGLER_SHOP_PASSWORD")] = SEED_PASSWORD,
    concurrency: Annotated[int, typer.Option(help="Most requests in flight at once.")] = 32,
    timeout: Annotated[float, typer.Option(help="Per-request timeout, seconds.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed of the mix.")] = 1,
    staff_writes: Annotated[float | None, typer.Option(help="Share of actions that are staff writes (price edits; 1 in 5 creates a product), 0..1; default: the natural mix.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Drive realistic traffic at the shop and report per endpoint; exit 1 if any request failed."""
    try:
        config = TrafficConfig(base_url=base_url.rstrip("/"), rate=rate, duration=duration,
                               anonymous=anonymous, customers=customers, staff=staff,
                               password=password, concurrency=concurrency, timeout=timeout,
                               seed=seed, staff_writes=staff_writes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    stop = threading.Event()
    # Ctrl-C ends the run gracefully: the summary of what ran is still printed.
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"driving {base_url} at {rate}/s for "
          f"{f'{duration:g}s' if duration else 'until Ctrl-C'} ...", file=sys.stderr)
    try:
        summary = run_traffic(config, stop)
    except TrafficError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            print(json.dumps({"ok": False, "base_url": base_url, "error": str(exc)}))
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    print(json.dumps(summary) if as_json else render_table(summary))
    raise typer.Exit(0 if summary["ok"] else 1)
