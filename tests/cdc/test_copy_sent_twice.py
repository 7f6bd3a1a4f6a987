"""A chunk of a copy that reaches the sink twice (its capture crashed after the chunk was in
the transport and before it recorded so, cdc/transport/kafka_progress.py) is copied once:
the sink skips the rows its copy got past already, unless the copy started over."""

from __future__ import annotations

from typing import Any

from cdc.events import ChangeEvent, Position
from tests.cdc.ownership_shop import Shop, shop
from tests.cdc.test_ownership_sink import product, sink_for

__all__ = ["shop"]  # fixture


def _copied(ids: list[int], n: int, *, start: bool = False) -> list[ChangeEvent]:
    """Copied rows of catalog_product as one transaction (after a "start" marker if asked)."""
    out = [ChangeEvent(op="r", table="catalog_product", key={}, before=None, after=None,
                       position=Position(0, n), last=False, snapshot="start")] if start else []
    out += [ChangeEvent(op="r", table="catalog_product", key={"id": i}, before=None,
                        after=product(i, f"p{i}", "1.00", 1), position=Position(0, n + 1 + j),
                        last=False, snapshot="true") for j, i in enumerate(ids)]
    out[-1].last = True
    return out


def _apply(sink: Any, events: list[ChangeEvent]) -> tuple[str, list[Any] | None, int]:
    sink.begin()
    sink.write(events)
    sink.commit()
    return sink.snapshot_state["catalog_product"]


def test_rows_of_a_chunk_sent_twice_are_copied_once(shop: Shop) -> None:
    sink = sink_for(shop.fwd)
    try:
        assert _apply(sink, _copied([1, 2], 0)) == ("copying", [2], 2)
        # the same chunk again, then the next: only the next is copied
        assert _apply(sink, _copied([1, 2], 10) + _copied([3, 4], 20)) == ("copying", [4], 4)
        # a copy that starts over (a re-snapshot) copies every row again, in the same batch too
        assert _apply(sink, _copied([1, 2, 3], 30, start=True)) == ("copying", [3], 3)
    finally:
        sink.close()
