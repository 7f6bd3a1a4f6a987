"""`strangler traffic`: drive the shop with `loadgen` and print its per-endpoint report.

Without a URL it drives the router of the stack `strangler up` runs (`.strangler/run/stack.json`),
with the router's anonymous cohort cookie read from that stack's routes file; with no stack
running, the monolith on its default port, saying so.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from loadgen.engine import COHORT_COOKIE, SEED_PASSWORD, TrafficConfig, TrafficError, run_traffic
from loadgen.report import render_table
from stack import state

MONOLITH_URL = "http://127.0.0.1:8000"  # `strangler up`'s monolith (routes.yaml)


def front_url(stack: dict[str, Any]) -> str | None:
    """What serves the stack's requests: the router, or nginx/HAProxy (`up --data-plane`)."""
    if stack.get("router_url"):
        return str(stack["router_url"])
    plane = state.stack_process(stack, "dataplane")
    return str(plane["url"]) if plane and plane.get("url") else None


def cohort_cookie(routes: str | None) -> str | None:
    """The router's cookie for anonymous visitors (`anonymous_cohort.cookie`), if it names one."""
    if not routes:
        return None
    try:
        doc = yaml.safe_load(Path(routes).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    anon = doc.get("anonymous_cohort") if isinstance(doc, dict) else None
    cookie = anon.get("cookie") if isinstance(anon, dict) else None
    return cookie if isinstance(cookie, str) else None


def default_target() -> tuple[str, str | None]:
    """The router (or data plane) of the running stack, and its cohort cookie; else the monolith."""
    stack = state.running_stack()
    url = front_url(stack) if stack else None
    if stack is None or url is None:
        print(f"note: no stack is running (`strangler up`), so this drives the monolith at "
              f"{MONOLITH_URL} directly; give the router's URL to go through it", file=sys.stderr)
        return MONOLITH_URL, None
    return url, cohort_cookie(stack.get("routes"))


def traffic(
    base_url: Annotated[str | None, typer.Argument(
        help="The shop or the router in front of it; default: the router of the running stack "
             "(`strangler up`, or its nginx/HAProxy with --data-plane), else the monolith on :8000.",
        envvar="STRANGLER_TRAFFIC_URL", show_default=False)] = None,
    rate: Annotated[float, typer.Option(help="Requests started per second.")] = 20.0,
    duration: Annotated[float, typer.Option(help="Seconds to run; 0 = until Ctrl-C.")] = 30.0,
    anonymous: Annotated[int, typer.Option(help="Anonymous visitors browsing at once; each leaves after a few requests and a new one (a new cohort) comes.")] = 8,
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
    cookie = None
    if base_url is None:
        base_url, cookie = default_target()
    try:
        config = TrafficConfig(base_url=base_url.rstrip("/"), rate=rate, duration=duration,
                               anonymous=anonymous, customers=customers, staff=staff,
                               password=password, concurrency=concurrency, timeout=timeout,
                               seed=seed, staff_writes=staff_writes,
                               cohort_cookie=cookie or COHORT_COOKIE)
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
