"""routes.yaml: validation with line/key/fix, the JSON Schema, and set_weight."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from router import ledger
from router.config import SCHEMA, ConfigError, load_config, parse_config
from router.edit import set_weight

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
# the shop
ledger: ledger.jsonl
upstreams:
  monolith: {url: "http://127.0.0.1:8000"}
  catalog: {url: "http://127.0.0.1:8001"}   # the extracted service
routes:
  - name: products
    match: {prefix: /api/products}
    backends: {monolith: 90, catalog: 10}   # canary
  - name: rest
    match: {prefix: /}
    backends: {monolith: 100}
"""


def test_the_example_routes_file_is_valid_against_code_and_schema() -> None:
    config = load_config(ROOT / "routes.yaml")
    names = [r.name for r in config.routes]
    assert {"products", "categories"} <= set(names)
    assert config.route("products").weights == {"monolith": 100, "catalog": 0}
    assert config.route("products").shadow is not None and config.route("products").shadow.percent == 0
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(yaml.safe_load((ROOT / "routes.yaml").read_text()), SCHEMA)


@pytest.mark.parametrize(("bad", "line", "key", "words"), [
    (GOOD.replace("catalog: 10}", "catalog: 150}"), 9, "routes[0].backends.catalog", "0..100"),
    (GOOD.replace("catalog: 10}", "catalog: 20}"), 9, "routes[0].backends", "sum to 110"),
    (GOOD.replace("{monolith: 90, catalog: 10}", "{monolith: 90, search: 10}"), 9,
     "routes[0].backends.search", "unknown upstream"),
    (GOOD.replace("backends: {monolith: 100}", "bakends: {monolith: 100}"), 12, "routes[1].bakends", "bakends"),
    (GOOD.replace('"http://127.0.0.1:8001"', '"ftp://x"'), 5, "upstreams.catalog.url", "http://"),
    (GOOD.replace("prefix: /api/products", "prefix: api/products"), 8,
     "routes[0].match.prefix", "does not match"),
    (GOOD + "  - name: rest\n    match: {prefix: /x}\n    backends: {monolith: 100}\n", 13,
     "routes[2].name", "used twice"),
    ("upstreams: [\n", 2, "", "not valid YAML"),
    (GOOD.replace("catalog: 10}   # canary", "catalog: 10}\n    retry: {idempotent: [PUT, POST]}"), 10,
     "routes[0].retry.idempotent[1]", "POST is not idempotent"),
])
def test_errors_name_line_key_value_and_fix(bad: str, line: int, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(bad, source="routes.yaml")
    message = str(info.value)
    assert f"routes.yaml:{line}" in message
    assert key in message
    assert words in message
    assert "fix:" in message


def test_config_objects_are_immutable() -> None:
    config = parse_config(GOOD)
    with pytest.raises(AttributeError):
        config.routes[0].retries = 3  # type: ignore[misc]


def test_set_weight_edits_only_the_weights_atomically_and_ledgers(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    entry = set_weight(path, route="products", backend="catalog", weight=25, actor="alice",
                       reason="canary step 2")
    text = path.read_text()
    assert "backends: {monolith: 75, catalog: 25}   # canary" in text
    assert text.replace("75, catalog: 25", "90, catalog: 10") == GOOD  # nothing else moved
    assert load_config(path).route("products").weights == {"monolith": 75, "catalog": 25}
    entries = ledger.tail(tmp_path / "ledger.jsonl")
    assert entries == [entry]
    assert entry["actor"] == "alice" and entry["reason"] == "canary step 2"
    assert entry["old"] == {"monolith": 90, "catalog": 10}
    assert entry["new"] == {"monolith": 75, "catalog": 25}
    assert entry["config_sha256"] == load_config(path).sha256


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"route": "nope", "backend": "catalog", "weight": 5}, "no route named"),
    ({"route": "products", "backend": "search", "weight": 5}, "no backend"),
    ({"route": "products", "backend": "catalog", "weight": 101}, "0..100"),
    ({"route": "products", "backend": "catalog", "weight": "5"}, "0..100"),
    ({"route": "rest", "backend": "monolith", "weight": 50}, "only backend"),
])
def test_set_weight_refuses_bad_changes_and_writes_nothing(tmp_path: Path, kwargs: dict, words: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match=words):
        set_weight(path, actor="t", reason="r", **kwargs)
    assert path.read_text() == GOOD
    assert not (tmp_path / "ledger.jsonl").exists()


def test_set_weight_needs_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match="reason"):
        set_weight(path, route="products", backend="catalog", weight=5, actor="t", reason=" ")


def test_ledger_lines_are_json(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    for i in range(3):
        ledger.append(path, actor="a", route="r", old={"m": 100 - i}, new={"m": 99 - i}, reason="x")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["old"] for line in lines] == [{"m": 100}, {"m": 99}, {"m": 98}]


def test_relative_paths_follow_the_file_as_named_not_its_symlink_target(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap as routes.yaml -> ..data/routes.yaml -> ..<timestamp>/…;
    # a relative ledger must live beside the name, not inside the read-only, replaced folder.
    stamped = tmp_path / "..2026_11_27"
    stamped.mkdir()
    (stamped / "routes.yaml").write_text(GOOD)
    (tmp_path / "..data").symlink_to(stamped.name)
    link = tmp_path / "routes.yaml"
    link.symlink_to("..data/routes.yaml")
    config = load_config(link)
    assert config.ledger_path == tmp_path / "ledger.jsonl"


def test_retry_and_redact_keys() -> None:
    config = parse_config(GOOD.replace("catalog: 10}   # canary", "catalog: 10}\n    retry: {idempotent: [PUT]}\n"
                                       "    shadow: {to: catalog, redact: [X-Api-Key]}"))
    products, rest = config.routes
    assert products.retry_methods == {"GET", "HEAD", "OPTIONS", "PUT"}
    assert rest.retry_methods == {"GET", "HEAD", "OPTIONS"}  # DELETE, PUT only by opt-in
    assert products.shadow is not None
    assert products.shadow.redact == {"x-api-key", "cookie", "authorization", "set-cookie", "proxy-authorization"}
