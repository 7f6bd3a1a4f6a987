"""A flip changes a group's `owner:` and `hold:`, nothing else: write just those into the file's
own text, so that the comments and layout a team keeps in its ownership.yaml stay.

`value_end` and `line_end` are the two facts about PyYAML's marks that any such in-place edit
needs; router/edit.py splices routes.yaml with them too.

`spliced` answers None when it cannot do that safely (the change touches something else, or
the group is written in flow style); the caller then writes the whole file (`dump`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from ownership import Hold, Ownership


def spliced(text: str, old: Ownership, new: Ownership) -> str | None:
    """`text` (which parses to `old`) with every group's owner and hold as in `new`; None when
    more than that differs or the text cannot be edited in place."""
    from ownership import dump, parse  # the package imports this module

    if set(old.groups) != set(new.groups):
        return None
    moved = replace(old, groups={n: replace(g, owner=new.groups[n].owner, hold=new.groups[n].hold)
                                 for n, g in old.groups.items()})
    if dump(moved) != dump(new):
        return None  # not only owners and holds: write the whole file
    try:
        root = yaml.compose(text)
        assert isinstance(root, yaml.MappingNode)
        groups = next(v for k, v in root.value if k.value == "groups")
    except (yaml.YAMLError, StopIteration, AssertionError, AttributeError, TypeError):
        return None
    edits: list[tuple[int, int, str]] = []
    for key, node in groups.value:
        name = key.value
        if name not in new.groups or not isinstance(node, yaml.MappingNode) or node.flow_style:
            return None
        before, after = old.groups[name], new.groups[name]
        pairs = {k.value: (k, v) for k, v in node.value}
        if before.owner != after.owner:
            _, v = pairs["owner"]
            edits.append((v.start_mark.index, v.end_mark.index, after.owner))
        if before.hold != after.hold:
            edits += _hold_edit(text, node, pairs.get("hold"), after.hold)
    out = text
    for start, end, value in sorted(edits, reverse=True):
        out = out[:start] + value + out[end:]
    try:
        if dump(parse(out)) != dump(new):
            return None
    except Exception:  # noqa: BLE001 - any doubt: the whole file is written instead
        return None
    return out


def _hold_edit(text: str, node: yaml.MappingNode, pair: tuple[yaml.Node, yaml.Node] | None,
               hold: Hold | None) -> list[tuple[int, int, str]]:
    if hold is None:
        if pair is None:
            return []
        k, v = pair
        start = text.rfind("\n", 0, k.start_mark.index) + 1  # the key's whole lines go
        return [(start, line_end(text, value_end(v)) + 1, "")]
    flow = (f"{{since: {round(hold.since, 3)}, until: {round(hold.until, 3)}, "
            f"reason: {json.dumps(hold.reason)}}}")
    if pair is not None:
        _, v = pair
        return [(v.start_mark.index, value_end(v), flow)]
    last = node.value[-1][1]
    at = line_end(text, value_end(last))
    indent = " " * node.value[0][0].start_mark.column
    return [(at, at, f"\n{indent}hold: {flow}")]


def value_end(node: yaml.Node) -> int:
    """Where a value's own text ends (a block collection's end mark lies past what follows it)."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return value_end(last[1] if isinstance(node, yaml.MappingNode) else last)
    return int(node.end_mark.index)


def line_end(text: str, at: int) -> int:
    if at > 0 and text[at - 1] == "\n":
        return at - 1
    found = text.find("\n", at)
    return len(text) if found == -1 else found
