"""CDC's Prometheus exporter: what each scrape says about a stream, its run and its slot.

The views are built by hand here; tests/deploy/test_prometheus_live.py runs
`strangler cdc metrics --listen` over a stream on a real PostgreSQL, scraped by Prometheus.
"""

from __future__ import annotations

import os
import time

from prometheus_client.parser import text_string_to_metric_families

from cdc import prom

DEAD_PID = 2**22 + 1  # above pid_max's default: never a running process


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels), parsed as Prometheus would."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_a_running_stream_its_lag_in_seconds_and_its_slot() -> None:
    slot = {"active": True, "retained_wal_bytes": 5000, "wal_bytes_behind": 120, "wal_status": "reserved",
            "safe_wal_size": 9000}
    run = {"state": "streaming", "pid": os.getpid(), "events": 42, "lag_ms": 1500.0,
           "wal_bytes_behind": 120, "dead_letters": 3, "updated": 1700000000.5}
    found = samples(prom.render([prom.StreamView("shop", runs={"both": run}, slot=slot, slot_name="s1",
                                                 source_up=True)], {"catalog": 2}))
    assert value(found, "strangler_cdc_stream_state", stream="shop", part="both", state="streaming") == 1
    assert value(found, "strangler_cdc_stream_state", stream="shop", part="both", state="dead") == 0
    assert value(found, "strangler_cdc_events_total", stream="shop", part="both") == 42
    assert value(found, "strangler_cdc_lag_seconds", stream="shop", part="both") == 1.5
    assert value(found, "strangler_cdc_dead_letters", stream="shop") == 3
    assert value(found, "strangler_cdc_updated_timestamp_seconds", stream="shop", part="both") == 1700000000.5
    assert value(found, "strangler_cdc_slot_retained_wal_bytes", stream="shop", slot="s1") == 5000
    assert value(found, "strangler_cdc_slot_behind_bytes", stream="shop", slot="s1") == 120
    assert value(found, "strangler_cdc_slot_safe_wal_bytes", stream="shop", slot="s1") == 9000
    assert value(found, "strangler_cdc_slot_wal_status", stream="shop", slot="s1", status="reserved") == 1
    assert value(found, "strangler_cdc_slot_wal_status", stream="shop", slot="s1", status="lost") == 0
    assert value(found, "strangler_cdc_dual_writes", group="catalog") == 2


def test_a_run_whose_process_is_gone_is_dead_and_a_missing_slot_says_so() -> None:
    run = {"state": "streaming", "pid": DEAD_PID, "events": 1, "lag_ms": 0.0, "dead_letters": 0}
    found = samples(prom.render([prom.StreamView("shop", runs={"both": run}, slot=None, slot_name="s1",
                                                 source_up=True)]))
    assert value(found, "strangler_cdc_stream_state", stream="shop", part="both", state="dead") == 1
    assert value(found, "strangler_cdc_stream_state", stream="shop", part="both", state="streaming") == 0
    assert value(found, "strangler_cdc_slot_present", stream="shop", slot="s1") == 0
    assert value(found, "strangler_cdc_slot_retained_wal_bytes", stream="shop", slot="s1") is None
    # its file still fresh: a run in another pid namespace (the state folder shared), not dead
    fresh = {**run, "updated": time.time()}
    found = samples(prom.render([prom.StreamView("shop", runs={"both": fresh})]))
    assert value(found, "strangler_cdc_stream_state", stream="shop", part="both", state="streaming") == 1
    # a clean stop is a stop, whoever holds the pid now
    run["state"] = "stopped"
    found = samples(prom.render([prom.StreamView("shop", runs={"both": run})]))
    assert value(found, "strangler_cdc_stream_state", stream="shop", part="both", state="stopped") == 1


def test_an_unreachable_source_is_source_up_0_and_no_slot_series() -> None:
    found = samples(prom.render([prom.StreamView("shop", slot_name="s1", source_up=False)]))
    assert value(found, "strangler_cdc_source_up", stream="shop") == 0
    assert not [k for k in found if k[0].startswith("strangler_cdc_slot_")]


def test_a_kafka_streams_halves_are_parts_and_dead_letters_are_the_apply_ends() -> None:
    me = os.getpid()
    runs = {"capture": {"state": "streaming", "pid": me, "events": 10, "lag_ms": 5.0, "dead_letters": 0},
            "apply": {"state": "failed", "pid": me, "events": 7, "lag_ms": 900.0, "dead_letters": 4}}
    found = samples(prom.render([prom.StreamView("k", runs=runs)]))
    assert value(found, "strangler_cdc_stream_state", stream="k", part="capture", state="streaming") == 1
    assert value(found, "strangler_cdc_stream_state", stream="k", part="apply", state="failed") == 1
    assert value(found, "strangler_cdc_events_total", stream="k", part="apply") == 7
    assert value(found, "strangler_cdc_dead_letters", stream="k") == 4
