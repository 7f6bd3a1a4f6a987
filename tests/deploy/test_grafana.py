"""deploy/grafana/strangler.json: a dashboard Grafana can import (the fields of its classic JSON
model that a new dashboard is made with, and every panel placed and typed), whose queries read
only series Strangler exposes or its recording rules record. Grafana itself is not run here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.metric_names import exposed, names_in, recorded

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "strangler.json"
NO_QUERIES = {"row", "text", "alertlist", "dashlist", "news"}  # panels that read no data source

_GRID = {"type": "object", "required": ["h", "w", "x", "y"],
         "properties": {"h": {"type": "integer", "minimum": 1}, "w": {"type": "integer", "minimum": 1, "maximum": 24},
                        "x": {"type": "integer", "minimum": 0, "maximum": 23}, "y": {"type": "integer", "minimum": 0}}}
_TARGET = {"type": "object", "required": ["refId", "expr"],
           "properties": {"refId": {"type": "string", "minLength": 1}, "expr": {"type": "string", "minLength": 1}}}
# Grafana's classic dashboard model, as a new dashboard is initialised (docs: "Dashboard JSON model")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "uid", "title", "tags", "timezone", "editable", "graphTooltip", "panels", "time",
                 "timepicker", "templating", "annotations", "refresh", "schemaVersion", "version", "links"],
    "properties": {
        "id": {"type": ["integer", "null"]},
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "graphTooltip": {"enum": [0, 1, 2]},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {"type": "object", "required": ["list"],
                       "properties": {"list": {"type": "array", "items": {"type": "object",
                                                                          "required": ["name", "type"]}}}},
        "annotations": {"type": "object", "required": ["list"]},
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "type", "title", "gridPos"],
            "properties": {"id": {"type": "integer"}, "type": {"type": "string"}, "title": {"type": "string"},
                           "gridPos": _GRID, "targets": {"type": "array", "items": _TARGET}}}},
    },
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def test_the_dashboard_has_the_models_required_fields(dashboard: dict[str, Any]) -> None:
    jsonschema.validate(dashboard, SCHEMA)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for p in panels:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] not in NO_QUERIES:
            assert p.get("targets"), f"panel {p['title']!r} has no query"
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
            assert p["datasource"]["uid"] == "${datasource}"  # the variable, not a fixed one


def test_the_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"]:
        g = p["gridPos"]
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])):
            assert cell not in taken, f"{p['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = p["title"]


def test_every_query_reads_series_that_exist(dashboard: dict[str, Any]) -> None:
    known = exposed() | recorded()
    unknown = {p["title"]: sorted(names_in(t["expr"]) - known)
               for p in dashboard["panels"] for t in p.get("targets", [])}
    assert {k: v for k, v in unknown.items() if v} == {}
    read = {n for p in dashboard["panels"] for t in p.get("targets", []) for n in names_in(t["expr"])}
    # the figures are all on it: RED, breakers, shadow, rollout step, lag, slot, dead letters, dual writes
    for name in ("strangler:backend_requests:rate5m", "strangler:backend_error_ratio:rate5m",
                 "strangler:backend_latency_seconds:p99_5m", "strangler_breaker_open",
                 "strangler_shadow_window_rate", "strangler:candidate_weight", "strangler_cdc_lag_seconds",
                 "strangler_cdc_slot_behind_bytes", "strangler_cdc_slot_retained_wal_bytes",
                 "strangler_cdc_slot_wal_status", "strangler_cdc_dead_letters", "strangler_cdc_dual_writes",
                 "strangler_cdc_stream_state", "catalog:http_requests:rate5m"):
        assert name in read, name
