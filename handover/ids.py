"""Ids that never collide while two sides hold one table (`strangler ids`, `strangler own`).

CDC copies rows with their ids. If the monolith and the catalog service both insert into
the same logical table, each must take ids the other never takes, or one side's new row
arrives at the other as an update of an unrelated row. The shop reserves blocks (README,
"Ids that never collide"): the monolith keeps [1, 1e9), the catalog service allocates in
[1e9, 2e9) — disjoint, fits a 32-bit integer, works on SQLite and PostgreSQL, holds with
both sides inserting at once, and a glance at an id tells which side made it.

Which database is a side's: the source of the side's stream in streams.yaml (the side
named in ownership.yaml), else the target of the other side's stream. A new catalog
database starts in its block (its migration 0002, run by `strangler up`, the demo and every
deployment); `strangler own` calls `reserve_side` before it flips writes, which also
bounds the monolith's sequences on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ownership
from cdc import config as cdc_config
from cdc import ids
from cdc.errors import CDCError, ConfigError
from extracted.catalog.models import ID_BLOCK
from handover.errors import HandoverError, IdsUsage

# The shop's blocks, half-open [start, end): the monolith keeps its ids, the catalog
# service takes the next billion (its schema starts there). Below 2**31 - 1 (PostgreSQL
# `integer`).
BLOCKS: dict[str, tuple[int, int]] = {
    "monolith": (1, ID_BLOCK[0]),
    "catalog": ID_BLOCK,
}


def side_urls(streams: Path, group: str) -> tuple[ownership.Group, dict[str, str]]:
    """The group and each of its sides' database URL, from streams.yaml + ownership.yaml."""
    try:
        cfg = cdc_config.load(streams)
        own = ownership.load(cfg.ownership_path or Path(streams).with_name(ownership.DEFAULT_PATH))
        g = own.group(group)
    except (ConfigError, ownership.OwnershipError) as exc:
        raise IdsUsage(str(exc)) from None
    urls: dict[str, str] = {}
    for side in g.sides.values():  # a stream's source is its side's database
        if side.stream in cfg.streams:
            urls[side.name] = cfg.streams[side.stream].source_url
    for side in g.sides.values():  # ... and its target is the other side's
        stream = cfg.streams.get(side.stream)
        other = g.other(side.name).name
        if stream is not None and other not in urls:
            urls[other] = stream.target_url
    return g, urls


def chosen_group(streams: Path, group: str | None) -> str:
    """`group`, or ownership.yaml's only group when none is given."""
    if group is not None:
        return group
    try:
        cfg = cdc_config.load(streams)
        own = ownership.load(cfg.ownership_path or Path(streams).with_name(ownership.DEFAULT_PATH))
    except (ConfigError, ownership.OwnershipError) as exc:
        raise IdsUsage(str(exc)) from None
    if len(own.groups) != 1:
        raise IdsUsage(f"give --group, one of: {', '.join(own.groups) or '(ownership.yaml declares none)'}")
    return next(iter(own.groups))


def chosen_side(streams: Path, group: str, side: str | None) -> str:
    """`side`, or the group's one side that is not the monolith when none is given."""
    if side is not None:
        return side
    g, _ = side_urls(streams, group)
    others = [name for name in g.sides if name != "monolith"]
    if len(others) != 1:
        raise IdsUsage(f"give --side, one of: {', '.join(g.sides)}")
    return others[0]


def block_of(side: str, start: int | None = None, end: int | None = None) -> tuple[int, int]:
    """`side`'s block: the shop's (BLOCKS), or the one given."""
    if start is not None or end is not None:
        if start is None or end is None:
            raise IdsUsage("give both --start and --end (a half-open block [start, end))")
        if not 1 <= start < end:
            raise IdsUsage(f"--start {start} --end {end}: need 1 <= start < end")
        return start, end
    if side not in BLOCKS:
        raise IdsUsage(f"no block is set for side {side!r} (the shop's: {_blocks()}); "
                       "give one with --start and --end")
    return BLOCKS[side]


def reserve_side(streams: Path, group: str, side: str,
                 block: tuple[int, int] | None = None) -> dict[str, Any]:
    """Give `side`'s tables of `group` their block, all or none (for `strangler own`, `up`).

    Raises `HandoverError` with what to do; returns `cdc.ids.prepare_owner`'s report plus the side."""
    g, urls = side_urls(streams, group)
    s = g.side(side) if side in g.sides else None
    if s is None:
        raise IdsUsage(f"group {group!r} has no side {side!r}; its sides: {', '.join(g.sides)}")
    if side not in urls:
        raise IdsUsage(f"no stream in {streams} reads or writes side {side!r}'s database "
                       f"(its stream is {s.stream!r}); add the stream, then run this again")
    chosen = block or block_of(side)
    try:
        report = ids.prepare_owner(urls[side], s.tables, chosen)
    except CDCError as exc:
        raise HandoverError(f"side {side}: {exc}") from None
    return {"group": group, "side": side, **report}


def _blocks() -> str:
    return ", ".join(f"{k} [{a:_}, {b:_})" for k, (a, b) in BLOCKS.items())


def allocators(streams: Path, group: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each side's id allocators (next id, largest id, inside the side's block or not) and the
    problems found: an allocator outside its block, or a side no stream reaches. Two sides
    inserting with an allocator outside its block could pick the same id, and CDC would turn
    one side's new row into an overwrite of the other's."""
    g, urls = side_urls(streams, group)
    sides: list[dict[str, Any]] = []
    problems: list[str] = []
    for side in g.sides.values():
        block = BLOCKS.get(side.name)
        entry: dict[str, Any] = {"side": side.name, "owner": side.name == g.owner,
                                 "block": list(block) if block else None, "tables": []}
        url = urls.get(side.name)
        if url is None:
            problems.append(f"{side.name}: no stream reaches its database (stream {side.stream!r})")
        for table in side.tables if url else ():
            try:
                a = ids.describe(url, table)  # type: ignore[arg-type]
            except CDCError as exc:
                problems.append(f"{side.name}.{table}: {exc}")
                continue
            inside = block is not None and a.next_id is not None and block[0] <= a.next_id < block[1]
            if not inside and block is not None and a.max_id is not None and a.max_id >= block[1]:
                # rows of the other side's block are here (the reverse stream copied them): a
                # SQLite allocator can never go back below them
                problems.append(f"{side.name}.{table}: next id {a.next_id} is outside the block {block} "
                                f"because ids up to {a.max_id} were copied in from the other side; safe "
                                f"only while one side inserts (owner now: {g.owner}); to let both insert, "
                                f"give {side.name} a block above {a.max_id}: strangler ids reserve --side "
                                f"{side.name} --start N --end M")
            elif not inside:
                problems.append(f"{side.name}.{table}: next id {a.next_id} is outside the block "
                                f"{block}; fix: strangler ids reserve --side {side.name}")
            entry["tables"].append({**a.as_dict(), "in_block": inside})
        sides.append(entry)
    return sides, problems
