"""The metric names Strangler exposes, taken from the code that renders them, and the names an
expression reads: so the rules and the dashboard can only name series that exist."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace

import yaml
from prometheus_client.parser import text_string_to_metric_families

from cdc import prom
from extracted.kit.metrics import Metrics as CatalogMetrics
from router.metrics import Metrics as RouterMetrics
from router.metrics import prometheus as router_text
from router.metrics import rollout_series, route_weights

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "strangler.rules.yml"
# a name as PromQL spells one: a word, possibly with colons (recorded series)
_NAME = re.compile(r"(?<![\w:.\"'])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])\s*(?=[{\[)\s*/+\-<>=!]|$)")
_NOT_NAMES = {"sum", "rate", "by", "on", "ignoring", "group_left", "group_right", "and", "or",
              "unless", "histogram_quantile", "time", "delta", "increase", "max", "min", "avg",
              "count", "without", "bool", "offset", "le", "irate", "topk", "bottomk", "abs",
              "clamp_min", "clamp_max", "max_over_time", "min_over_time", "avg_over_time",
              "label_replace", "vector", "scalar", "sort", "sort_desc", "deriv", "inf", "nan"}


def exposed() -> set[str]:
    """Every sample name the router, CDC and the catalog render (with _bucket/_sum/_total...)."""
    router = RouterMetrics()
    router.observe("r", "b", 500, 3.0)
    router.breakers["b"] = {"state": "open", "opened": 1}
    router.rate_limited["r"] = 1
    router.shadow_stats("r", 1)
    route = SimpleNamespace(name="r", backends=(("a", 90), ("b", 10)), candidate="b")
    catalog = CatalogMetrics("catalog")
    catalog.observe("GET", "/api/products/", 200, 0.01)
    run = {"state": "streaming", "pid": os.getpid(), "events": 1, "lag_ms": 1.0, "wal_bytes_behind": 1,
           "dead_letters": 0, "updated": 1.0}
    slot = {"active": True, "retained_wal_bytes": 1, "wal_bytes_behind": 1, "wal_status": "reserved",
            "safe_wal_size": 1}
    cdc = prom.render([prom.StreamView("s", runs={"both": run}, slot=slot, slot_name="x", source_up=True)],
                      {"g": 0})
    rollout = {"route": "r", "candidate": "b", "steps": [10, 100], "step": 1, "weight": 10, "state": "running"}
    texts = [router_text(router.aggregate()) + route_weights([route]) + rollout_series([rollout]),
             catalog.render(), cdc]
    return {s.name for text in texts for family in text_string_to_metric_families(text)
            for s in family.samples}


def names_in(expr: str) -> set[str]:
    """The series names an expression reads (functions, keywords and label names left out)."""
    without_labels = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers hold no names
    without_lists = re.sub(r"\b(by|on|ignoring|group_left|group_right|without)\s*\([^)]*\)", r"\1", without_labels)
    without_strings = re.sub(r"\"[^\"]*\"", '""', without_lists)
    without_durations = re.sub(r"\[[^\]]*\]", "[]", without_strings)
    found = set(_NAME.findall(without_durations))
    return {n for n in found if n not in _NOT_NAMES and not re.fullmatch(r"[0-9.e+-]+", n)}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def recorded() -> set[str]:
    return {r["record"] for r in rules() if "record" in r}
