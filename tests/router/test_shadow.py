"""Shadow traffic: the client sees only the primary; diffs are net of calibrated noise."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.router.conftest import raw_request


def config(ups: dict, percent: int = 100, queue: int = 256, ignore: str = "[upstream]") -> str:
    return f"""
ledger: ledger.jsonl
access_log: false
upstreams:
  a: {{url: "{ups['a'].url}"}}
  b: {{url: "{ups['b'].url}"}}
routes:
  - name: shadowed
    match: {{prefix: /}}
    backends: {{a: 100, b: 0}}
    shadow: {{to: b, percent: {percent}, ignore: {ignore}, queue: {queue}, keep: 5}}
"""


def wait_compared(router, n: int) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while True:
        shadow = router.status()["routes"]["shadowed"]["shadow"]
        if shadow and shadow["compared"] + shadow["errors"] >= n or time.monotonic() > deadline:
            return shadow
        time.sleep(0.1)


def test_differences_are_counted_and_kept_and_the_client_sees_the_primary(upstreams, start_router) -> None:
    router = start_router(config(upstreams, ignore="[]"))
    with router.client() as client:
        for i in range(10):
            r = client.get(f"/echo/{i}")
            assert r.json()["upstream"] == "a" and r.headers["x-strangler-backend"] == "a"
    shadow = wait_compared(router, 10)
    assert shadow["compared"] == 10
    assert shadow["differing"] == 10  # "upstream": "a" vs "b"
    assert shadow["net_diff_rate"] == 1.0
    assert len(shadow["pairs"]) == 5  # keep: 5
    assert "upstream" in shadow["pairs"][-1]["diffs"]
    assert shadow["pairs"][-1]["candidate"]["backend"] == "b"


def test_noise_is_calibrated_away(upstreams, start_router) -> None:
    router = start_router(config(upstreams))
    with router.client() as client:
        for _ in range(20):
            client.get("/noisy")  # a timestamp and a shuffled list differ on every call
    shadow = wait_compared(router, 20)
    assert shadow["compared"] == 20
    assert shadow["noise_differing"] > 0
    assert shadow["differing_raw"] > 0
    # once calibrated, only the noisy fields differ: nothing left against the candidate
    assert shadow["differing"] <= 2, shadow
    assert shadow["net_diff_rate"] < shadow["diff_rate"]


def test_writes_are_not_mirrored_and_a_full_queue_drops(upstreams, start_router) -> None:
    router = start_router(config(upstreams, queue=1))
    assert httpx.post(f"{router.url}/echo", content=b"x").status_code == 200

    async def burst() -> None:
        async with httpx.AsyncClient(base_url=router.url, timeout=10) as client:
            # 30 at once; each comparison takes two slow calls: the queue of 1 overflows
            answers = await asyncio.gather(*(client.get("/slow?s=1") for _ in range(30)))
            assert all(r.status_code == 200 for r in answers), [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]

    asyncio.run(burst())
    shadow = router.status()["routes"]["shadowed"]["shadow"]
    assert shadow["dropped"] > 0
    assert shadow["mirrored"] + shadow["dropped"] == 30  # the POST was never offered


def test_writes_mirrored_only_when_allowed_carry_their_body_and_are_not_repeated(upstreams, start_router) -> None:
    text = config(upstreams).replace("keep: 5}", "keep: 5, methods: [GET, POST]}")
    router = start_router(text)
    payload = b"z" * 50_000
    r = httpx.post(f"{router.url}/upload", content=payload)
    assert r.json()["upstream"] == "a" and r.json()["received"] == 50_000
    r = httpx.post(f"{router.url}/upload", content=iter([payload[:1000], payload[1000:]]))  # chunked
    assert r.json()["received"] == 50_000
    shadow = wait_compared(router, 2)
    assert shadow["compared"] == 2 and shadow["errors"] == 0
    assert shadow["differing"] == 0, shadow["pairs"]  # b received the same bytes (same sha256)
    assert shadow["noise_compared"] == 0  # a write is never sent to the primary twice


def test_kept_pairs_redact_credentials_and_configured_fields(upstreams, start_router, http) -> None:
    text = config(upstreams, ignore="[]").replace("keep: 5}", "keep: 5, headers: [content-type, set-cookie], "
                                                   "redact: [X-Api-Key, token]}")
    router = start_router(text, http=http)
    request = (b"GET /login?token=query-secret&page=2 HTTP/1.1\r\nHost: shop\r\n"
               b"Cookie: sessionid=cookie-secret\r\nAuthorization: Bearer bearer-secret\r\n"
               b"Proxy-Authorization: Basic proxy-secret\r\nX-Api-Key: key-secret\r\n\r\n")
    answer = raw_request(router.port, request)
    assert answer.startswith(b"HTTP/1.1 200") and b"cookie-secret" in answer  # the client sees it all
    shadow = wait_compared(router, 1)
    assert shadow["differing"] == 1
    kept = json.dumps(router.status())
    for secret in ("query-secret", "cookie-secret", "bearer-secret", "proxy-secret", "key-secret", "issued-secret"):
        assert secret not in kept, secret
    pair = shadow["pairs"][-1]
    assert pair["path"] == "/login?token=[redacted]&page=2"
    assert pair["primary"]["headers"]["set-cookie"] == "[redacted]"
    echoed = dict(json.loads(pair["primary"]["body"])["headers"])
    assert echoed["cookie"] == echoed["authorization"] == echoed["x-api-key"] == "[redacted]"
    assert echoed["host"] == f"127.0.0.1:{upstreams['a'].port}"  # the rest stays readable


def _mirror(text: str):  # type: ignore[no-untyped-def]
    from router.config import parse_config
    from router.proxy import Router

    config = parse_config(text)
    router = Router(config=config)
    router.shadow.configure(config)
    return router, config.routes[0]


PAIR_CONFIG = """
access_log: false
upstreams: {a: {url: "http://127.0.0.1:1"}, b: {url: "http://127.0.0.1:2"}}
routes:
  - name: shadowed
    match: {prefix: /}
    backends: {a: 100, b: 0}
    shadow: {to: b, percent: 100, keep: 10}
"""


def test_one_503_on_the_primarys_reask_does_not_hide_five_candidate_500s() -> None:
    from router.diff import Response
    from router.metrics import merge, prometheus

    router, route = _mirror(PAIR_CONFIG)
    ok = Response(200, {"content-type": "application/json"}, b'{"id": 1}')
    broken = Response(500, {"content-type": "application/json"}, b'{"id": 1}')
    unavailable = Response(503, {"content-type": "application/json"}, b'{"id": 1}')
    answers = {"b": [broken] * 5, "a": [unavailable] + [ok] * 4}  # a: the re-ask

    async def call(snap, name, method, line, tail, body):  # type: ignore[no-untyped-def]
        return answers[name].pop(0)

    router.shadow._call = call  # type: ignore[method-assign]

    async def five() -> None:
        for _ in range(5):
            await router.shadow._compare(route, None, "a", "GET", b"GET /p HTTP/1.1\r\nHost: ", b"\r\n", ok, 0.0, b"")

    asyncio.run(five())
    shadow = merge([router.metrics.snapshot()])["shadow"]["shadowed"]
    assert shadow["compared"] == 5 and shadow["differing_raw"] == 5 and shadow["diff_rate"] == 1.0
    assert shadow["noise_differing"] == 1
    # Not 0 %: the primary disagreed with itself once, the candidate every time.
    assert shadow["net_diff_rate"] == 0.6  # the first two were judged while status looked noisy
    assert shadow["window"]["net_diff_rate"] == 1.0  # as of now, all five are real
    assert shadow["window"]["fields"]["status"] == {"raw": 5, "noise": 1, "is_noise": False}
    # Both kinds of pairs are kept: those judged noise, and the real ones.
    assert [p["noise"] for p in shadow["noise_pairs"]] == [["status"], ["status"]]
    assert [p["diffs"] for p in shadow["pairs"]] == [["status"]] * 3
    text = prometheus(merge([router.metrics.snapshot()]))
    assert 'strangler_shadow_window_rate{route="shadowed",kind="net"} 1.0' in text
    assert 'strangler_shadow_window_rate{route="shadowed",kind="noise"} 0.2' in text


def test_sampling_below_100_percent_is_reproducible_with_a_seed() -> None:
    import random

    def picks(seed: int) -> list[bool]:
        router, route = _mirror(PAIR_CONFIG.replace("percent: 100", f"percent: 30, seed: {seed}"))
        return [router.shadow.wants(route, "GET") for _ in range(200)]

    first = picks(7)
    assert first == picks(7)  # the same requests are mirrored run after run
    assert first != picks(8)
    expected = random.Random(7)
    assert first == [expected.random() * 100 < 30 for _ in range(200)]
    assert 40 <= sum(first) <= 80  # about 30 %


def test_a_shadow_copy_to_an_upstream_of_several_endpoints_names_the_one_it_reaches(
        upstreams, start_router) -> None:
    """The candidate's first endpoint is down and checked out: copies go to its second one,
    and their Host line names that endpoint (not the first one listed)."""
    from devstack.ports import free_port
    from tests.router.conftest import eventually

    dead = free_port()
    text = config(upstreams, ignore="[]").replace(
        f'b: {{url: "{upstreams["b"].url}"}}',
        f'b: {{url: ["http://127.0.0.1:{dead}", "{upstreams["b"].url}"], '
        'health: {path: /healthz, interval: 0.1, timeout: 0.1, fall: 1, rise: 1}}')
    router = start_router(text)
    key = f"b@127.0.0.1:{dead}"
    assert eventually(lambda: not any(w["healthy"] for w in router.status()["breakers"][key]["workers"]))
    with router.client() as client:
        assert client.get("/echo/1").status_code == 200
    shadow = wait_compared(router, 1)
    assert shadow["compared"] == 1 and shadow["errors"] == 0
    echoed = dict(json.loads(shadow["pairs"][-1]["candidate"]["body"])["headers"])
    assert echoed["host"] == f"127.0.0.1:{upstreams['b'].port}"
