"""Keys that compare equal across drivers and sides, and the batches of keys a sink records.

    key_value(v)        uuid objects and uuid text, integral Decimals and ints compare alike
    canonical_key(key)  sorted JSON of normalised values: what the dual-write detector compares
    KeyLog              one table's changed keys in one sink batch, recorded as one row of
                        ``strangler_cdc_recent_keys`` (cdc/checkpoint.py)
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from cdc.events import json_default

__all__ = ["KeyLog", "canonical_key", "key_value"]


def key_value(v: Any) -> Any:
    """Key values compare equal across drivers: uuid objects and text, integral numbers."""
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, str) and len(v) == 36 and v.count("-") == 4:
        return v.lower()
    if isinstance(v, Decimal) and v == v.to_integral_value():
        return int(v)
    return v


@functools.cache
def _json_name(name: str) -> str:
    return json.dumps(name)


def canonical_key(key: dict[str, Any]) -> str:
    """A key as text that compares equal across drivers and sides: sorted JSON of normalised
    values (what the dual-write detector compares)."""
    if len(key) == 1:  # the common case: json.dumps costs ~10 µs
        ((name, v),) = key.items()
        if v.__class__ is int:
            return f"{{{_json_name(name)}:{v}}}"
    return json.dumps({k: key_value(v) for k, v in key.items()}, sort_keys=True,
                      default=json_default, separators=(",", ":"))


class KeyLog:
    """The keys of one table's changes in one sink batch, in source and in target terms.

    Recorded as ONE row per table per batch (not a row per key): a per-key table made the
    direct path half as fast (benchmarks/cdc.py). `add` runs once per applied row, so it
    only appends the key's values; target values are computed only when a key column is
    converted (a rename needs just the target column names).
    """

    __slots__ = ("table", "cols", "tcols", "_convs", "_single", "values", "tvalues", "ts_min", "ts_max")

    def __init__(self, table: str, cols: Sequence[str], tcols: Sequence[str],
                 convs: Sequence[Callable[[Any], Any] | None]) -> None:
        self.table = table
        self.cols, self.tcols = list(cols), list(tcols)
        self._convs = list(convs) if any(convs) else None
        self.values: list[list[Any]] = []
        self.tvalues: list[list[Any]] | None = [] if self._convs else None
        # the common key: one column, not converted
        self._single = self.cols[0] if len(self.cols) == 1 and self._convs is None else None
        self.ts_min = self.ts_max = 0

    def add(self, key: dict[str, Any], ts_ms: int) -> None:
        """Note one change's key (values in `cols` order); raises KeyError/ValueError/
        TypeError/ArithmeticError when the key does not map (the caller skips it)."""
        if self._single is not None:
            v = key[self._single]
            self.values.append([v if v.__class__ is int else key_value(v)])
        else:
            raw = [key[c] for c in self.cols]
            if self._convs is not None and self.tvalues is not None:
                self.tvalues.append([key_value(fn(v) if fn is not None and v is not None else v)
                                     for fn, v in zip(self._convs, raw, strict=True)])
            self.values.append([v if v.__class__ is int else key_value(v) for v in raw])
        if ts_ms > self.ts_max:
            self.ts_max = ts_ms
        if not self.ts_min or ts_ms < self.ts_min:
            self.ts_min = ts_ms

    def __len__(self) -> int:
        return len(self.values)

    def body(self) -> str:
        """The row's JSON: column names and value lists (target values only where converted)."""
        return json.dumps({"cols": self.cols, "tcols": self.tcols, "values": self.values,
                           "tvalues": self.tvalues}, default=json_default, separators=(",", ":"))

    @staticmethod
    def keys(body: str) -> list[tuple[str, str]]:
        """(source key, target key) as canonical text, per recorded change of a body."""
        doc = json.loads(body)
        cols, tcols, values = doc["cols"], doc["tcols"], doc["values"]
        tvalues = doc.get("tvalues") or values
        return [(canonical_key(dict(zip(cols, v, strict=True))), canonical_key(dict(zip(tcols, t, strict=True))))
                for v, t in zip(values, tvalues, strict=True)]
