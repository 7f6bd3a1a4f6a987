"""The storefront's small "served by" line: on with STRANGLER_SHOW_BACKEND (as `up` and the demo run it)."""

from __future__ import annotations

from django.test.utils import override_settings

from stack.model import reference_stack


def test_storefront_says_the_monolith_served_it_and_asks_the_router_about_the_api(anon) -> None:  # type: ignore[no-untyped-def]
    with override_settings(STRANGLER_SHOW_BACKEND=True):
        page = anon.get("/").content.decode()
        product = anon.get("/products/1/").content.decode()
    for html in (page, product):
        assert 'id="strangler-served"' in html and '<b data-backend="page">monolith</b>' in html
        assert 'r.headers.get("X-Strangler-Backend")' in html  # the router's backend_header
    with override_settings(STRANGLER_SHOW_BACKEND=False):
        assert "strangler-served" not in anon.get("/").content.decode()


def test_the_demo_stack_turns_it_on() -> None:
    assert reference_stack().process("monolith").env["STRANGLER_SHOW_BACKEND"] == "1"
