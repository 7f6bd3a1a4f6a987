"""The renderers' output, without running a server: headers, slices, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplane import gateway, haproxy, istio, model, nginx
from dataplane.errors import ExportError
from router import balance

ROUTES = """ledger: ledger.jsonl
upstreams:
  monolith: {url: "http://127.0.0.1:8000"}
  catalog: {url: "http://127.0.0.1:8001"}
  search: {url: "http://127.0.0.1:8002"}
routes:
  - name: products
    match: {prefix: /api/products}
    backends: {monolith: 63, catalog: 10, search: 27}
    cohort: {header: X-User}
    identity: true
    shadow: {to: catalog, percent: 5}
  - name: root
    match: {prefix: /}
    backends: {monolith: 100}
"""


def plan_of(tmp_path: Path, text: str = ROUTES) -> model.Plan:
    (tmp_path / "routes.yaml").write_text(text)
    return model.load_plan(tmp_path / "routes.yaml")


def test_both_start_with_the_source_and_its_ledger_position(tmp_path: Path) -> None:
    (tmp_path / "ledger.jsonl").write_text(json.dumps({"time": "2026-12-01T10:00:00Z", "route": "products",
                                                       "new": {"monolith": 63}, "config_sha256": "ab" * 32}) + "\n")
    plan = plan_of(tmp_path)
    for text in (nginx.render(plan), haproxy.render(plan)):
        head = text.splitlines()[:2]
        assert str(tmp_path / "routes.yaml") in head[0] and plan.sha256[:16] in head[0]
        assert "last entry 2026-12-01T10:00:00Z (route products" in head[1]


def test_the_split_is_written_in_the_router_s_slice_order_with_its_cut_points(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    text = nginx.render(plan)
    # primary first, then the other backends reversed; the last takes the rest.
    assert 'split_clients "products:$r0_key" $r0_split {\n    63% monolith;\n    27% search;\n    * catalog;\n}' in text
    cuts = balance.cut_points([("monolith", 63), ("catalog", 10), ("search", 27)])
    # HAProxy: the same bounds, in a map (the last slice's bound is above every hash) ...
    assert haproxy.cuts_map(plan) == (f"r0.monolith {cuts[0][1]}\nr0.search {cuts[1][1]}\n"
                                      f"r0.catalog {model.ABOVE_EVERY_HASH}\nr0.splits 1\n")
    cfg = haproxy.render(plan)
    for name, _ in cuts:  # ... looked up per slice, in the same order
        assert (f"set-var(txn.cut) str(r0.{name}),map_str_int(/etc/haproxy/strangler-cuts.map,0) if is_r0 "
                f"!{{ var(txn.backend) -m found }}\n    http-request set-var(txn.backend) str({name}) if is_r0 "
                "!{ var(txn.backend) -m found } { var(txn.hash),sub(txn.cut) -m int lt 0 }\n") in cfg
    # ... so new weights change the map, never the config
    shifted = plan_of(tmp_path, ROUTES.replace("monolith: 63, catalog: 10, search: 27", "monolith: 0, catalog: 100, search: 0"))
    assert _body(haproxy.render(shifted)) == _body(cfg)
    # (and at 100 % anonymous visitors get no fresh cohort, as in the router)
    assert haproxy.cuts_map(shifted) == f"r0.monolith 0\nr0.search 0\nr0.catalog {model.ABOVE_EVERY_HASH}\nr0.splits 0\n"


def _body(cfg: str) -> str:
    return "\n".join(line for line in cfg.splitlines() if not line.startswith("#"))


def test_routes_come_in_the_router_s_matching_order(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    assert [r.name for r in plan.rules] == ["products", "root"]  # longest prefix first, not file order
    assert plan_of(tmp_path, ROUTES.replace("prefix: /api/products", "exact: /api/products")).rules[0].exact


def test_what_a_target_cannot_do_is_listed(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    assert any("identity bridge" in line for line in nginx.limits(plan))
    assert any("not diffed" in line for line in nginx.limits(plan))
    assert any("mirroring to catalog not exported" in line for line in haproxy.limits(plan))
    assert "mirror /_strangler_mirror/r0;" in nginx.render(plan)
    assert "del-header x-strangler-identity" in haproxy.render(plan)


def test_https_upstreams_are_refused_saying_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="https upstreams .* not supported yet — fix"):
        plan_of(tmp_path, ROUTES.replace('"http://127.0.0.1:8002"', '"https://127.0.0.1:8002"'))


def test_a_salt_neither_target_can_carry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="salt .* fix: use letters"):
        plan_of(tmp_path, ROUTES.replace("cohort: {header: X-User}", 'cohort: {header: X-User}\n    salt: "a b$"'))


def test_the_lua_hash_is_shipped_with_the_package() -> None:
    assert 'core.register_converters("strangler_hash"' in haproxy.lua_source()


def test_the_readme_table_is_the_renderers_own() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for (feature, ng, why_ng), (_, hp, why_hp) in zip(nginx.FEATURES, haproxy.FEATURES, strict=True):
        assert f"| {feature} | {ng}: {why_ng} | {hp}: {why_hp} |" in readme, f"README's export table lacks {feature!r}"
    # the Kubernetes targets' table: the same features, in the same order
    for (feature, _, _), (k_feature, gw, why_gw), (i_feature, ist, why_ist) in zip(
            nginx.FEATURES, gateway.FEATURES, istio.FEATURES, strict=True):
        assert feature == k_feature == i_feature
        assert f"| {feature} | {gw}: {why_gw} | {ist}: {why_ist} |" in readme, \
            f"README's Gateway API / Istio table lacks {feature!r}"


def test_a_missing_server_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataplane import run
    monkeypatch.setattr(run.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ExportError, match="haproxy is not installed — fix: apt-get install -y haproxy"):
        run.binary("haproxy")


def test_a_config_the_server_refuses_is_shown_in_its_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataplane import run
    from tests.conftest import service_missing
    try:
        run.binary("nginx")
    except ExportError as exc:
        service_missing("nginx", exc)
    monkeypatch.setattr(run, "files", lambda *a, **k: {"nginx.conf": "events {}\nhttp { no_such_directive; }\n"})
    with pytest.raises(ExportError, match='nginx refused the rendered config:\n.*unknown directive "no_such_directive"'):
        run.start("nginx", plan_of(tmp_path), port=1)


def test_header_routes_are_rendered_first_match_first(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, ROUTES.replace(
        "    shadow: {to: catalog, percent: 5}\n",
        "    shadow: {to: catalog, percent: 5}\n"
        "    header_routes:\n"
        "      - {name: testers, header: X-Canary, exact: \"yes\", to: catalog}\n"
        "      - {name: beta, header: X-Plan, prefix: beta-, to: search}\n"
        "      - {name: staff, header: X-Staff, regex: \"[a-z]+@shop\\\\.example\", to: catalog}\n"))
    text = nginx.render(plan)
    # the first header route is the outermost map: it is asked first
    assert 'map $http_x_canary $r0_h0 {\n    "yes" catalog;\n    default $r0_h1;\n}' in text
    assert 'map $http_x_plan $r0_h1 {\n    "~^beta\\-" search;\n    default $r0_h2;\n}' in text
    assert 'map $http_x_staff $r0_h2 {\n    "~^(?:[a-z]+@shop\\.example)$" catalog;\n    default $r0_split;\n}' in text
    cfg = haproxy.render(plan)
    lines = [line.strip() for line in cfg.splitlines() if "req.fhdr(x-" in line and "txn.backend" in line]
    assert lines[:3] == [
        "http-request set-var(txn.backend) str(catalog) if is_r0 !{ var(txn.backend) -m found } "
        "{ req.fhdr(x-canary,1) -m str 'yes' }",
        "http-request set-var(txn.backend) str(search) if is_r0 !{ var(txn.backend) -m found } "
        "{ req.fhdr(x-plan,1) -m beg 'beta-' }",
        "http-request set-var(txn.backend) str(catalog) if is_r0 !{ var(txn.backend) -m found } "
        "{ req.fhdr(x-staff,1) -m reg '^(?:[a-z]+@shop\\.example)$' }"]
    for said in (nginx.limits(plan), haproxy.limits(plan)):
        assert any("header route regexes" in line for line in said)


def test_haproxy_s_admin_socket_moves_out_of_a_folder_too_deep_for_a_unix_socket(tmp_path: Path) -> None:
    from dataplane import run

    shallow = Path("/srv/shop")
    assert run.admin_socket(shallow) == shallow / run.ADMIN_SOCKET
    deep = tmp_path / ("a-project-folder-with-a-long-name" * 3) / ".strangler" / "dataplane" / "haproxy"
    moved = run.admin_socket(deep)
    assert len(str(moved)) <= run.SOCKET_PATH_MAX and moved != deep / run.ADMIN_SOCKET
    assert moved == run.admin_socket(deep) != run.admin_socket(deep.with_name("nginx"))  # stable, per folder
    cfg = run.files("haproxy", plan_of(tmp_path), port=8080, folder=deep)["haproxy.cfg"]
    assert f"stats socket {moved} " in cfg
