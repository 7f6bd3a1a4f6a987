"""`strangler export`: targets, files, and errors that say what to do."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app
from tests.dataplane.test_render import ROUTES

runner = CliRunner()


def test_an_unknown_target_lists_the_targets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "envoy", "--routes", str(tmp_path / "routes.yaml")])
    assert result.exit_code == 2
    assert "unknown data plane 'envoy'; targets: nginx, haproxy, gateway-api, istio" in result.stderr


def test_a_bad_routes_file_gets_the_router_s_message(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text(ROUTES.replace("monolith: 63", "monolith: 64"))
    result = runner.invoke(app, ["export", "nginx", "--routes", str(bad)])
    assert result.exit_code == 1
    assert "weights sum to 101, not 100" in result.stderr and "fix" in result.stderr
    missing = runner.invoke(app, ["export", "nginx", "--routes", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "no routes file at" in missing.stderr and "--routes PATH" in missing.stderr


def test_writes_the_files_and_says_what_is_not_exported(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    result = runner.invoke(app, ["export", "haproxy", "--routes", str(routes), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    cfg = (tmp_path / "out" / "haproxy.cfg").read_text()
    assert f"lua-load {(tmp_path / 'out' / 'strangler.lua').absolute()}" in cfg
    assert (tmp_path / "out" / "strangler.lua").exists()
    assert "not exported: route products: identity bridge" in result.stderr


def test_json_is_one_document(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    result = runner.invoke(app, ["export", "nginx", "--routes", str(routes), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["target"] == "nginx" and "split_clients" in doc["files"]["strangler.conf"]
    assert any("identity bridge" in line for line in doc["limits"])


def test_gateway_api_writes_httproutes_and_says_what_is_not_exported(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    result = runner.invoke(app, ["export", "gateway-api", "--routes", str(routes), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all((tmp_path / "out" / "httproute.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["HTTPRoute", "HTTPRoute"]
    assert "use: kubectl apply -f httproute.yaml" in result.stderr
    assert "not exported: route products: weights are per request — sticky cohorts: no" in result.stderr


def test_istio_json_carries_the_documents_and_the_limits(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    result = runner.invoke(app, ["export", "istio", "--routes", str(routes), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    kinds = [d["kind"] for d in yaml.safe_load_all(doc["files"]["istio.yaml"])]
    assert kinds == ["VirtualService", "DestinationRule", "DestinationRule", "DestinationRule"]
    assert any("same users as the router: no" in line for line in doc["limits"])


def test_gateway_and_channel_reach_the_documents_and_are_refused_where_they_do_not_apply(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.replace("    shadow: {to: catalog, percent: 5}\n", "    retries: 2\n"))
    result = runner.invoke(app, ["export", "gateway-api", "--routes", str(routes), "--json",
                                 "--gateway", "infra/public", "--channel", "experimental"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(json.loads(result.stdout)["files"]["httproute.yaml"]))
    assert docs[0]["spec"]["parentRefs"] == [{"name": "public", "namespace": "infra"}]
    assert any(rule.get("retry") == {"attempts": 2} for rule in docs[0]["spec"]["rules"])
    for args, message in ((["nginx", "--gateway", "edge"], "--gateway does not apply to nginx"),
                          (["istio", "--channel", "experimental"], "--channel does not apply to istio"),
                          (["gateway-api", "--channel", "beta"], "standard or experimental"),
                          (["istio", "--gateway", "Edge_1"], "--gateway")):
        refused = runner.invoke(app, ["export", *args, "--routes", str(routes)])
        assert refused.exit_code != 0 and message in refused.stderr and "fix" in refused.stderr, (args, refused.stderr)
