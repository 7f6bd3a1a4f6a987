"""ownership/: the one file that says which side may write each synced table."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import ownership
from ownership import Hold, OwnershipError

SHIPPED = Path(__file__).resolve().parents[2] / "ownership.yaml"

GOOD = """
version: 1
groups:
  catalog:
    owner: monolith
    sides:
      monolith: {stream: catalog, tables: [catalog_product, catalog_category]}
      catalog: {stream: catalog_reverse, tables: [products, categories]}
    keeps:
      monolith: {catalog_product: [stock_count]}
"""


def test_the_shipped_file_loads_and_the_monolith_owns_the_catalog() -> None:
    o = ownership.load(SHIPPED)
    g = o.group("catalog")
    assert g.owner == "monolith"
    assert o.for_stream("catalog") == (g, g.sides["monolith"])
    assert o.for_stream("catalog_reverse") == (g, g.sides["catalog"])
    assert o.for_table("catalog", "products") is g


def test_writable_follows_the_owner_and_the_kept_columns() -> None:
    g = ownership.parse(GOOD).group("catalog")
    # the owner writes whole rows; the columns the other side keeps are named as the other side calls them
    assert g.writable("monolith", "catalog_product") == ownership.Writable(rows=True, columns=frozenset())
    assert g.writable("catalog", "products") == ownership.Writable(rows=False, columns=frozenset())
    flipped = ownership.with_owner(ownership.parse(GOOD), "catalog", "catalog").group("catalog")
    assert flipped.writable("catalog", "products") == ownership.Writable(
        rows=True, columns=frozenset({"stock_count"}))
    assert flipped.writable("monolith", "catalog_product") == ownership.Writable(
        rows=False, columns=frozenset({"stock_count"}))
    assert flipped.writable("monolith", "catalog_category") == ownership.Writable(rows=False, columns=frozenset())


@pytest.mark.parametrize(("text", "where"), [
    (GOOD.replace("owner: monolith", "owner: billing"), "groups.catalog.owner"),
    (GOOD.replace("version: 1", "version: 2"), "version"),
    (GOOD.replace("[products, categories]", "[products]"), "groups.catalog.sides"),
    (GOOD.replace("stream: catalog_reverse", "stream: catalog"), "stream"),
    (GOOD.replace("{catalog_product: [stock_count]}", "{products: [stock_count]}"), "keeps.monolith.products"),
    (GOOD + "    surprise: 1\n", "groups.catalog.surprise"),
])
def test_a_bad_file_is_refused_with_the_key_path_and_a_fix(text: str, where: str) -> None:
    with pytest.raises(OwnershipError) as info:
        ownership.parse(text, source="ownership.yaml")
    assert where in str(info.value) and "fix:" in str(info.value)


def test_a_hold_ends_by_itself() -> None:
    hold = Hold(since=100.0, until=130.0, reason="flip")
    assert hold.active(now=129.0) and not hold.active(now=130.0)
    assert hold.retry_after(now=129.5) == 1 and hold.retry_after(now=100.0) == 5


def test_write_round_trips_and_edit_serialises_concurrent_editors(tmp_path: Path) -> None:
    path = tmp_path / "ownership.yaml"
    path.write_text(GOOD)
    held = ownership.with_hold(ownership.load(path), "catalog", Hold(since=1.0, until=2.0, reason="x"))
    written = ownership.write(path, held)
    again = ownership.load(path)
    assert again.group("catalog").hold == Hold(since=1.0, until=2.0, reason="x")
    assert again.sha256 == written.sha256
    assert again.group("catalog").keeps == ownership.parse(GOOD).group("catalog").keeps

    def flip(to: str) -> None:
        for _ in range(20):
            with ownership.edit(path) as box:
                box[0] = ownership.with_owner(box[0], "catalog", to)

    threads = [threading.Thread(target=flip, args=(side,)) for side in ("catalog", "monolith")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ownership.load(path).group("catalog").owner in {"catalog", "monolith"}  # never a torn file


def test_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(OwnershipError, match="no ownership file"):
        ownership.load(tmp_path / "nope.yaml")


def test_a_flip_changes_only_the_owner_and_hold_lines_and_keeps_the_team_s_comments(tmp_path: Path) -> None:
    """`strangler own` writes a hold, then the new owner with the hold cleared: every other
    line of the shipped file (its comments, its flow-style lists) stays as the team wrote it."""
    path = tmp_path / "ownership.yaml"
    text = SHIPPED.read_text()
    path.write_text(text)
    reason = 'strangler own catalog --by catalog: "step 4" — café'
    with ownership.edit(path) as box:
        box[0] = ownership.with_hold(box[0], "catalog", Hold(since=1.5, until=2.5, reason=reason))
    held = path.read_text()
    assert [line for line in held.splitlines() if not line.startswith("    hold: ")] == text.splitlines()
    assert ownership.load(path).group("catalog").hold == Hold(since=1.5, until=2.5, reason=reason)
    with ownership.edit(path) as box:  # a second hold replaces the first in place
        box[0] = ownership.with_hold(box[0], "catalog", Hold(since=3.0, until=4.0, reason="again"))
    assert path.read_text().count("hold:") == 1
    with ownership.edit(path) as box:
        box[0] = ownership.with_owner(ownership.with_hold(box[0], "catalog", None), "catalog", "catalog")
    flipped = path.read_text()
    changed = [(a, b) for a, b in zip(text.splitlines(), flipped.splitlines(), strict=True) if a != b]
    assert changed == [("    owner: monolith", "    owner: catalog")]
    assert ownership.load(path).group("catalog").hold is None


def test_a_change_beyond_owner_and_hold_or_a_flow_style_group_writes_the_whole_file(tmp_path: Path) -> None:
    from dataclasses import replace

    from ownership.splice import spliced

    old = ownership.parse(GOOD)
    g = old.group("catalog")
    fewer = replace(old, groups={"catalog": replace(g, keeps={})})
    assert spliced(GOOD, old, fewer) is None
    flow = "version: 1\ngroups:\n  catalog: {owner: monolith, sides: {monolith: {stream: a, tables: [t]}, " \
           "catalog: {stream: b, tables: [u]}}}\n"
    f_old = ownership.parse(flow)
    assert spliced(flow, f_old, ownership.with_owner(f_old, "catalog", "catalog")) is None
    path = tmp_path / "ownership.yaml"
    path.write_text(flow)
    ownership.write(path, ownership.with_owner(f_old, "catalog", "catalog"))  # whole, and right
    assert ownership.load(path).group("catalog").owner == "catalog"
