"""Changing routes.yaml: the one way the admin API and the CLI edit it.

Place in the flow: `strangler shift`, the rollout controller and the admin API
(`POST /_strangler/routes/<route>/weights|header-routes|shadow`) call these; the reloader then
swaps the new file in. Every change goes the same way (`_change`): under an exclusive lock on
`<file>.lock`, read the text, splice in the new value (comments and layout elsewhere stay),
validate the result whole with `parse_config` (a bad change raises ConfigError naming the
key and the fix, and nothing is written), write it atomically, append one ledger entry.

- `set_weight`: one backend's weight; the first other backend absorbs the rest.
- `set_header_route` / `clear_header_route`: one named entry of a route's `header_routes`.
- `set_shadow` / `clear_shadow`: a route's `shadow:` (to, percent, methods).

A set that changes nothing and a clear of something absent write nothing and return None:
a rollout controller that restarts may send its last change again.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ownership.splice import line_end, value_end
from router import ledger
from router.config import Config, parse_config
from router.errors import ConfigError

# (file text, its config) -> (new text, the ledger entry's fields) or None: nothing to change
Edit = Callable[[str, Config], tuple[str, dict[str, Any]] | None]


def _change(path: str | os.PathLike[str], *, route: str, actor: str, reason: str, what: str,
            edit: Edit) -> dict[str, Any] | None:
    p = Path(path)
    if not reason.strip():
        raise ConfigError(f"a {what} needs a reason — fix: say why (it goes in the ledger)")
    with open(f"{p}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = p.read_text()
        base = p.absolute().parent
        result = edit(text, parse_config(text, source=str(p), base_dir=base))
        if result is None:
            return None
        new_text, fields = result
        config = parse_config(new_text, source=str(p), base_dir=base)
        atomic_write(p, new_text)
        return ledger.append_record(config.ledger_path, {"actor": actor, "route": route, **fields,
                                                         "reason": reason, "config_sha256": config.sha256})


# --- weights ----------------------------------------------------------------------------

def weight_edit(text: str, *, route: str, backend: str, weight: int, source: str = "<string>",
                base_dir: Path | None = None) -> tuple[str, dict[str, int], dict[str, int]]:
    """New file text with one backend's weight set; the first other backend absorbs the rest.

    Returns (new text, old weights, new weights). Only the weight scalars change in the text.
    """
    config = parse_config(text, source=source, base_dir=base_dir)
    r = config.route(route)
    old = r.weights
    if backend not in old:
        raise ConfigError(f"route {route!r} has no backend {backend!r}; its backends: "
                          f"{', '.join(old)} — fix: name one of them")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ConfigError(f"weight {weight!r} is not an integer percentage — fix: use 0..100")
    new = dict(old)
    new[backend] = weight
    others = [b for b in old if b != backend]
    if others:
        absorb = others[0]
        new[absorb] = 100 - sum(w for b, w in new.items() if b != absorb)
        if not 0 <= new[absorb] <= 100:
            raise ConfigError(f"setting {backend}={weight} leaves {absorb} at {new[absorb]}% — "
                              "fix: lower the other backends' weights first")
    elif weight != 100:
        raise ConfigError(f"{backend!r} is the only backend of {route!r}; its weight stays 100 — "
                          "fix: add another backend first")
    route_node = _route_node(text, config, route)
    backends_node = next(v for k, v in route_node.value if k.value == "backends")
    edits = [(v.start_mark.index, v.end_mark.index, str(new[k.value]))
             for k, v in backends_node.value if new[k.value] != old[k.value]]
    for start, end, value in sorted(edits, reverse=True):
        text = text[:start] + value + text[end:]
    return text, old, new


def set_weight(path: str | os.PathLike[str], *, route: str, backend: str, weight: int,
               actor: str, reason: str) -> dict[str, Any]:
    """Change one weight in a routes file: validated whole, written atomically, ledgered.

    Returns the ledger entry. Raises ConfigError (nothing written) when the change or the
    result is invalid.
    """
    def edit(text: str, config: Config) -> tuple[str, dict[str, Any]]:
        new_text, old, new = weight_edit(text, route=route, backend=backend, weight=weight,
                                         source=config.source, base_dir=Path(path).absolute().parent)
        return new_text, {"old": old, "new": new}

    entry = _change(path, route=route, actor=actor, reason=reason, what="weight change", edit=edit)
    assert entry is not None
    return entry


# --- header routes and shadows ----------------------------------------------------------

HEADER_ROUTE_KEYS = ("name", "header", "exact", "prefix", "regex", "to")
SHADOW_KEYS = ("to", "percent", "methods")


def set_header_route(path: str | os.PathLike[str], *, route: str, rule: dict[str, Any], actor: str,
                     reason: str) -> dict[str, Any] | None:
    """Add (or replace, by name) one header route: `{name, header, exact|prefix|regex, to}`."""
    unknown = sorted(set(rule) - set(HEADER_ROUTE_KEYS))
    if unknown or not isinstance(rule.get("name"), str):
        raise ConfigError(f"header route {rule!r}: " + (f"unknown key(s) {', '.join(unknown)}" if unknown
                                                         else "no name")
                          + ' — fix: send {"name": "testers", "header": "X-Canary", "exact": "yes", '
                          '"to": "catalog"} (one of exact, prefix, regex)')
    return _header_routes(path, route, rule["name"], rule, actor, reason)


def clear_header_route(path: str | os.PathLike[str], *, route: str, name: str, actor: str,
                       reason: str) -> dict[str, Any] | None:
    """Remove the header route `name` (None when the route has none of that name)."""
    return _header_routes(path, route, name, None, actor, reason)


def _header_routes(path: str | os.PathLike[str], route: str, name: str, rule: dict[str, Any] | None,
                   actor: str, reason: str) -> dict[str, Any] | None:
    def edit(text: str, config: Config) -> tuple[str, dict[str, Any]] | None:
        now = [h.to_doc() for h in config.route(route).header_routes]
        old = next((h for h in now if h["name"] == name), None)
        if _folded(old) == _folded(rule):  # header names are case-insensitive
            return None
        items = [h for h in now if h["name"] != name]
        if rule is not None:
            at = next((i for i, h in enumerate(now) if h["name"] == name), len(items))
            items.insert(at, dict(rule))
        new_text = _set_key(text, _route_node(text, config, route), "header_routes",
                            json.dumps(items) if items else None)
        return new_text, {"kind": "header-route", "name": name, "old": old, "new": rule}

    return _change(path, route=route, actor=actor, reason=reason, what="header route change", edit=edit)


def _folded(rule: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if rule is None else {**rule, "header": str(rule.get("header", "")).lower()}


def set_shadow(path: str | os.PathLike[str], *, route: str, shadow: dict[str, Any], actor: str,
               reason: str) -> dict[str, Any] | None:
    """Set the route's `shadow:` `to`, `percent` (and `methods`, default GET, HEAD). A shadow
    already in the file keeps its other settings (ignore, unordered, redact, ...): only the
    keys given change, so a rollout's mirror step can put it back as it was."""
    unknown = sorted(set(shadow) - set(SHADOW_KEYS))
    missing = [k for k in ("to", "percent") if k not in shadow]
    if unknown or missing:
        raise ConfigError(f"shadow {shadow!r}: " + (f"unknown key(s) {', '.join(unknown)}" if unknown
                                                    else f"no {' or '.join(missing)}")
                          + ' — fix: send {"to": "catalog", "percent": 100, "methods": ["GET", "HEAD"]}')
    return _shadow(path, route, dict(shadow), actor, reason)


def clear_shadow(path: str | os.PathLike[str], *, route: str, actor: str, reason: str) -> dict[str, Any] | None:
    """Remove the route's `shadow:` (None when it has none)."""
    return _shadow(path, route, None, actor, reason)


def _shadow(path: str | os.PathLike[str], route: str, shadow: dict[str, Any] | None, actor: str,
            reason: str) -> dict[str, Any] | None:
    def edit(text: str, config: Config) -> tuple[str, dict[str, Any]] | None:
        s = config.route(route).shadow
        old = None if s is None else {"to": s.to, "percent": s.percent, "methods": sorted(s.methods)}
        new = None if shadow is None else dict(shadow)
        if new is not None and isinstance(new.get("methods"), list):
            new["methods"] = sorted(new["methods"])
        raw = _raw_route(text, config, route).get("shadow")
        written = new if new is None or not isinstance(raw, dict) else {**raw, **new}
        if old == new:
            return None
        new_text = _set_key(text, _route_node(text, config, route), "shadow",
                            None if written is None else json.dumps(written))
        return new_text, {"kind": "shadow", "old": old, "new": new}

    return _change(path, route=route, actor=actor, reason=reason, what="shadow change", edit=edit)


# --- splicing YAML text -----------------------------------------------------------------

def _raw_route(text: str, config: Config, route: str) -> dict[str, Any]:
    """The route's mapping as written in the file."""
    index = [r.name for r in config.routes].index(config.route(route).name)
    return dict(yaml.safe_load(text)["routes"][index])


def _route_node(text: str, config: Config, route: str) -> yaml.MappingNode:
    index = [r.name for r in config.routes].index(config.route(route).name)
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    routes_node = next(v for k, v in root.value if k.value == "routes")
    node = routes_node.value[index]
    assert isinstance(node, yaml.MappingNode)
    return node


def _set_key(text: str, node: yaml.MappingNode, key: str, value: str | None) -> str:
    """`node`'s `key` set to the flow text `value` (added after its last key), or removed (None)."""
    pairs = node.value
    found = next((i for i, (k, _) in enumerate(pairs) if k.value == key), None)
    if node.flow_style:
        raise ConfigError(f"the route is written as a flow mapping ({{...}}); the {key} of it cannot be "
                          "edited in place — fix: write the route as a block mapping (one key a line)")
    if found is None:
        if value is None:
            return text
        at = line_end(text, value_end(pairs[-1][1]))
        indent = " " * pairs[0][0].start_mark.column
        return f"{text[:at]}\n{indent}{key}: {value}{text[at:]}"
    k, v = pairs[found]
    if value is not None:
        return text[:v.start_mark.index] + value + text[value_end(v):]
    line_start = text.rfind("\n", 0, k.start_mark.index) + 1
    if text[line_start:k.start_mark.index].strip():  # `- key:` opens the item: the next key moves up
        return text[:k.start_mark.index] + text[pairs[found + 1][0].start_mark.index:]
    return text[:line_start] + text[line_end(text, value_end(v)) + 1:]


def atomic_write(path: Path, text: str) -> None:
    """Replace a file so readers see the old or the new text, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
