"""Header routes (router/headerroutes.py) and the admin API's route changes beside weights:
`header-routes` and `shadow`, each validated whole, written atomically and ledgered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.config import parse_config
from router.errors import ConfigError
from tests.router.conftest import AUTH, eventually


def config(ups: dict[str, Any]) -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{ups['a'].url}"}}
  b: {{url: "{ups['b'].url}"}}
routes:
  # the one route: b is the candidate at 0 %
  - name: split
    match: {{prefix: /}}
    backends: {{a: 100, b: 0}}   # weights stay as they are
    retries: 0
"""


def backend(router: Any, **headers: str) -> str:
    r = httpx.get(f"{router.url}/x", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.headers["x-strangler-backend"]


def change(router: Any, what: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{router.url}/_strangler/routes/split/{what}", headers=AUTH, json=body, timeout=10)


def ledger(router: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (router.config.parent / "ledger.jsonl").read_text().splitlines()]


def test_exact_prefix_and_regex_match_only_their_values() -> None:
    text = """
upstreams: {a: {url: "http://127.0.0.1:1"}, b: {url: "http://127.0.0.1:2"}}
routes:
  - name: r
    match: {prefix: /}
    backends: {a: 100, b: 0}
    header_routes:
      - {name: one, header: X-Canary, exact: "yes", to: b}
      - {name: two, header: X-Plan, prefix: beta-, to: b}
      - {name: three, header: X-User, regex: "[a-z]+@shop\\\\.example", to: b}
"""
    one, two, three = parse_config(text).route("r").header_routes
    assert one.header == "x-canary" and one.matches("yes") and not one.matches("yes!") and not one.matches(None)
    assert two.matches("beta-7") and not two.matches("a-beta-7")
    assert three.matches("ann@shop.example") and not three.matches("ann@shop.example.evil")


@pytest.mark.parametrize(("entry", "key", "words"), [
    ("{name: t, header: X-T, to: b}", "routes[0].header_routes[0]", "exactly one of exact, prefix or regex"),
    ("{name: t, header: X-T, exact: a, prefix: b, to: b}", "routes[0].header_routes[0]", "exactly one"),
    ("{name: t, header: X-T, regex: '(', to: b}", "routes[0].header_routes[0].regex", "not a regular expression"),
    ("{name: t, header: X-T, exact: a, to: c}", "routes[0].header_routes[0].to", "not a backend of this route"),
    ("{name: t, header: 'X T', exact: a, to: b}", "routes[0].header_routes[0].header", "not a header name"),
    ("{name: t, header: X-T, exact: a, to: b, extra: 1}", "routes[0].header_routes[0].extra", "Additional"),
])
def test_a_bad_header_route_is_refused_with_its_key_and_the_fix(entry: str, key: str, words: str) -> None:
    text = f"""
upstreams: {{a: {{url: "http://127.0.0.1:1"}}, b: {{url: "http://127.0.0.1:2"}}, c: {{url: "http://127.0.0.1:3"}}}}
routes:
  - name: r
    match: {{prefix: /}}
    backends: {{a: 100, b: 0}}
    header_routes: [{entry}]
"""
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert exc.value.key_path == key and words in str(exc.value) and "fix:" in str(exc.value)


def test_header_routes_set_through_the_admin_api_send_only_matching_requests(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    set_ = change(router, "header-routes", {"name": "testers", "header": "X-Canary", "exact": "yes",
                                            "to": "b", "reason": "testers first", "actor": "ann"})
    assert set_.status_code == 200 and set_.json()["changed"], set_.text
    assert {backend(router, **{"X-Canary": "yes"}) for _ in range(10)} == {"b"}
    assert {backend(router) for _ in range(10)} == {"a"}  # weight 0: nobody else
    assert {backend(router, **{"X-Canary": "no"}) for _ in range(5)} == {"a"}
    # a prefix and a regex beside it
    assert change(router, "header-routes", {"name": "beta", "header": "X-Plan", "prefix": "beta-", "to": "b",
                                            "reason": "beta plans"}).status_code == 200
    assert change(router, "header-routes", {"name": "staff", "header": "X-User", "regex": r"\w+@shop\.example",
                                            "to": "b", "reason": "staff"}).status_code == 200
    assert backend(router, **{"X-Plan": "beta-2"}) == "b" and backend(router, **{"X-Plan": "gamma"}) == "a"
    assert backend(router, **{"X-User": "bo@shop.example"}) == "b"
    assert backend(router, **{"X-User": "bo@shop.example.com"}) == "a"
    text = router.config.read_text()
    assert "# the one route" in text and "# weights stay as they are" in text  # only the key changed
    # the same again changes nothing and writes nothing
    again = change(router, "header-routes", {"name": "beta", "header": "X-Plan", "prefix": "beta-", "to": "b",
                                             "reason": "beta plans"})
    assert again.json() == {"ok": True, "changed": False} and router.config.read_text() == text
    for name in ("testers", "beta", "staff"):
        assert change(router, "header-routes", {"name": name, "clear": True, "reason": "done"}).json()["changed"]
    assert "header_routes" not in router.config.read_text()
    assert parse_config(router.config.read_text(), base_dir=router.config.parent).route("split").header_routes == ()
    assert backend(router, **{"X-Canary": "yes"}) == "a"
    entries = [e for e in ledger(router) if e.get("kind") == "header-route"]
    assert [(e["name"], e["old"] is None, e["new"] is None) for e in entries] == [
        ("testers", True, False), ("beta", True, False), ("staff", True, False),
        ("testers", False, True), ("beta", False, True), ("staff", False, True)]
    assert entries[0]["actor"] == "ann" and entries[0]["reason"] == "testers first"
    assert entries[0]["new"] == {"name": "testers", "header": "X-Canary", "exact": "yes", "to": "b"}


def test_shadow_set_and_cleared_through_the_admin_api(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    r = change(router, "shadow", {"to": "b", "percent": 100, "methods": ["GET"], "reason": "compare b"})
    assert r.status_code == 200 and r.json()["ledger"]["new"] == {"to": "b", "percent": 100, "methods": ["GET"]}
    for _ in range(5):
        assert backend(router) == "a"

    def compared() -> Any:
        s = router.status()["routes"]["split"]["shadow"]
        return s if s and s["compared"] + s["errors"] >= 5 else None

    assert eventually(compared), f"the router never shadowed 5 requests: {router.status()['routes']['split']}"
    assert router.admin("routes").json()["routes"][0]["shadow"] == {"to": "b", "percent": 100.0, "methods": ["GET"]}
    cleared = change(router, "shadow", {"clear": True, "reason": "enough"})
    assert cleared.status_code == 200 and cleared.json()["ledger"]["new"] is None
    assert "shadow" not in router.config.read_text()
    assert router.admin("routes").json()["routes"][0]["shadow"] is None
    assert change(router, "shadow", {"clear": True, "reason": "again"}).json()["changed"] is False
    assert [e["kind"] for e in ledger(router) if e.get("kind")] == ["shadow", "shadow"]


def test_setting_a_shadow_the_file_has_keeps_its_other_settings(tmp_path: Path) -> None:
    from router.edit import set_shadow

    routes = tmp_path / "routes.yaml"
    routes.write_text(config({"a": type("U", (), {"url": "http://127.0.0.1:1"}),
                              "b": type("U", (), {"url": "http://127.0.0.1:2"})})
                      + "    shadow: {to: b, percent: 0, ignore: [updated_at], unordered: [results]}\n")
    entry = set_shadow(routes, route="split", shadow={"to": "b", "percent": 50, "methods": ["GET"]},
                       actor="t", reason="mirror step")
    assert entry is not None and entry["old"] == {"to": "b", "percent": 0.0, "methods": ["GET", "HEAD"]}
    shadow = parse_config(routes.read_text(), source="r", base_dir=tmp_path).route("split").shadow
    assert shadow is not None and (shadow.percent, shadow.methods) == (50.0, frozenset({"GET"}))
    assert shadow.ignore == ("updated_at",) and shadow.unordered == ("results",)  # kept, not dropped
    set_shadow(routes, route="split", shadow={"to": "b", "percent": 0, "methods": ["GET", "HEAD"]},
               actor="t", reason="put back")
    back = parse_config(routes.read_text(), source="r", base_dir=tmp_path).route("split").shadow
    assert back is not None and back.percent == 0 and back.ignore == ("updated_at",)
    assert "# the one route" in routes.read_text()  # the rest of the file as it was


BAD_CHANGES = [
    ("header-routes", {"name": "t", "header": "X-T", "exact": "1", "to": "nope", "reason": "x"},
     "not a backend of this route"),
    ("header-routes", {"name": "t", "header": "X-T", "to": "b", "reason": "x"}, "exactly one of exact"),
    ("header-routes", {"name": "t", "header": "X-T", "regex": "(", "to": "b", "reason": "x"}, "regular expression"),
    ("header-routes", {"name": "t", "header": "X-T", "exact": "1", "to": "b", "colour": "red", "reason": "x"},
     "unknown key(s) colour"),
    ("header-routes", {"name": "t", "header": "X-T", "exact": "1", "to": "b"}, "needs a reason"),
    ("header-routes", {"name": "t", "clear": "yes", "reason": "x"}, '"clear" must be true or false'),
    ("shadow", {"to": "nope", "percent": 5, "reason": "x"}, "unknown upstream 'nope'"),
    ("shadow", {"to": "b", "percent": 500, "reason": "x"}, "500"),
    ("shadow", {"to": "b", "reason": "x"}, "no percent"),
    ("shadow", {"to": "b", "percent": 5, "methods": "GET", "reason": "x"}, "shadow.methods"),
]


def test_a_bad_change_is_422_with_what_to_fix_and_the_file_stays(upstreams, start_router) -> None:
    router = start_router(config(upstreams))  # one router for every case: each leaves it as it was
    before = router.config.read_text()
    for what, body, words in BAD_CHANGES:
        r = change(router, what, body)
        assert r.status_code == 422 and words in r.json()["detail"] and "fix:" in r.json()["detail"], (body, r.text)
        assert router.config.read_text() == before, body
    assert not (Path(router.config.parent) / "ledger.jsonl").exists() or not ledger(router)
