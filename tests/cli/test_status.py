"""`strangler status` summaries from router status documents (the router's real format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.routerapi import snapshots
from control.status import stream_status, summarize

BOUNDS = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]


def series(requests: int, errors: dict[str, int], buckets: dict[int, int]) -> dict[str, object]:
    counts = [0] * (len(BOUNDS) + 1)
    for i, n in buckets.items():
        counts[i] = n
    return {"requests": requests, "errors": errors, "statuses": {}, "buckets": counts,
            "p50_ms": None, "p99_ms": None}


def doc(mono: int, cat: int, cat_errors: int = 0, compared: int = 0, differing: int = 0) -> dict[str, object]:
    return {
        "routes": {
            "products": {
                "weights": {"monolith": 75, "catalog": 25},
                "backends": {
                    "monolith": series(mono, {}, {4: mono}),  # ≤ 25 ms
                    "catalog": series(cat, {"status_500": cat_errors} if cat_errors else {}, {2: cat}),
                },
                "shadow": {"compared": compared, "differing": differing, "dropped": 1,
                           "diff_rate": differing / compared if compared else 0.0, "pairs": []},
            },
            "monolith": {"weights": {"monolith": 100}, "backends": {"monolith": series(0, {}, {})},
                         "shadow": None},
        },
        "breakers": {"catalog": {"state": "open", "opened": 1}, "monolith": {"state": "closed"}},
        "latency_bounds_ms": BOUNDS,
    }


def test_summary_since_start() -> None:
    s = summarize(doc(300, 100, cat_errors=5, compared=40, differing=2))
    products = s["routes"][0]
    assert products["route"] == "products" and products["weights"] == {"monolith": 75, "catalog": 25}
    cat = products["backends"]["catalog"]
    assert cat["requests"] == 100 and cat["share"] == pytest.approx(0.25)
    assert cat["errors"] == 5 and cat["error_rate"] == pytest.approx(0.05)
    assert cat["p99_ms"] == 5.0 and products["backends"]["monolith"]["p99_ms"] == 25.0
    assert cat["breaker"] == "open"
    assert products["shadow"]["diff_rate"] == pytest.approx(0.05)
    json.dumps(s)  # one JSON document


def test_summary_between_two_documents_is_the_window() -> None:
    s = summarize(doc(400, 200, compared=50, differing=2), previous=doc(300, 100, compared=40, differing=2))
    products = s["routes"][0]
    assert products["requests"] == 200
    assert products["backends"]["catalog"]["share"] == pytest.approx(0.5)
    assert products["shadow"]["compared"] == 10 and products["shadow"]["diff_rate"] == 0.0


def test_snapshots_turn_bucket_lists_into_cumulative_ms() -> None:
    weights, snaps = snapshots(doc(10, 4), "products")
    assert weights == {"monolith": 75, "catalog": 25}
    assert snaps["catalog"].buckets[2] == (5.0, 4) and snaps["catalog"].buckets[-1][1] == 4


def test_stream_status_reads_metrics_files_and_flags_dead_streams(tmp_path: Path) -> None:
    folder = tmp_path / "cdc"
    folder.mkdir()
    (folder / "catalog.json").write_text(json.dumps(
        {"stream": "catalog", "state": "streaming", "lag_ms": 12.5, "dead_letters": 2,
         "events": 10, "pid": 999_999_999}))
    streams, note = stream_status(folder)
    assert note is None
    assert streams == [{"stream": "catalog", "state": "not running (last: streaming)", "lag_ms": 12.5,
                        "events_per_s": None, "events": 10, "dead_letters": 2,
                        "wal_bytes_behind": None, "slot": None, "error": None, "updated": None}]
    assert stream_status(tmp_path / "none")[1] == "no CDC stream has run from this state folder"


def test_status_says_who_writes_each_group_and_whether_the_other_side_refuses(tmp_path: Path) -> None:
    from cdc.health import ownership_status
    from cli.status import ownership_lines
    from handover.enforce import enforce_declared
    from tests.cli.ownenv import Shop

    shop = Shop(tmp_path)
    shop.create()
    before = ownership_status(str(shop.streams))
    assert before["groups"]["catalog"]["owner"] == "monolith"
    assert set(before["groups"]["catalog"]["guards"]["catalog"].values()) == {"open"}
    (line,) = ownership_lines(before)
    assert "catalog NOT guarded on categories, products, price_changes" in line
    assert "strangler own catalog --by monolith" in line
    enforce_declared(shop.streams, {})
    (line,) = ownership_lines(ownership_status(str(shop.streams)))
    assert line.startswith("ownership catalog: written by monolith") and "catalog guarded" in line
    assert "NOT guarded" not in line and "monolith open" in line


def test_status_shows_the_rollout_as_the_dashboard_does() -> None:
    from cli.status import rollout_lines

    (line,) = rollout_lines([{"route": "products", "candidate": "catalog", "state": "rolled_back",
                              "step": 2, "steps": [5, 25, 50], "weight": 0,
                              "verdict": {"decision": "rollback", "why": "candidate error rate 4.00% (4/100)"}}])
    assert line == ("rollout products → catalog: rolled back, step 2/3 at 0% · gate: rollback "
                    "(candidate error rate 4.00% (4/100))")
    assert rollout_lines(None) == []


def test_a_refused_reload_is_shown_with_the_routers_error() -> None:
    from cli.status import render

    d = doc(10, 4)
    d["config"] = {"source": "/srv/routes.yaml", "sha256": "ab",
                   "last_reload": {"ok": False, "at": 1_796_189_727.4, "source": "file-watch",
                                   "error": "routes.yaml:19: weights sum to 107, not 100"}}
    s = summarize(d)
    assert s["config"]["last_reload"]["ok"] is False
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render(s, title="t"))
    text = console.export_text()
    assert "RELOAD REFUSED" in text and "weights sum to 107" in text and "/srv/routes.yaml" in text
    d["config"]["last_reload"] = {"ok": True, "at": 1.0, "source": "admin", "error": None}
    console = Console(width=200, record=True)
    console.print(render(summarize(d), title="t"))
    assert "RELOAD" not in console.export_text()


@pytest.mark.parametrize(("ms", "text"), [(None, "-"), (0.42, "0.4 ms"), (53.8867, "54 ms"),
                                          (999.4, "999 ms"), (1234.5, "1.2 s"), (14_200, "14 s"),
                                          (150_000, "2.5 min")])
def test_lag_and_latency_print_with_sensible_precision(ms: float | None, text: str) -> None:
    from cli.output import duration_ms

    assert duration_ms(ms) == text


def test_status_prints_cdc_lag_as_people_read_it() -> None:
    from rich.console import Console

    from cli.status import render

    s = summarize(doc(10, 4))
    s["streams"] = [{"stream": "catalog", "state": "streaming", "lag_ms": 53.8867, "dead_letters": 0}]
    console = Console(width=200, record=True)
    console.print(render(s, title="t"))
    text = console.export_text()
    assert "54 ms" in text and "53.8867" not in text
