"""A stream's mapping, checked whole against both live schemas and compiled for the sink.

`compile_stream` takes the declared :class:`cdc.config.TableMap`s plus the source's and
target's table descriptions and either returns one :class:`TableMapping` per table or raises
one ConfigError listing every problem, each with its key path and the fix. Column types are
compared by category (the catalog's, or SQLAlchemy's type class; a domain is its base type):
a pair that would not copy exactly is refused there, naming the converter or the fix. At run time a
TableMapping turns a source row image into target columns, applies the filter, and decides
whether a changed source relation (PostgreSQL sends one after DDL) is still covered.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc import convert
from cdc.config import Condition, StreamConfig, TableMap
from cdc.errors import ConfigError, SchemaChanged

log = logging.getLogger("cdc.mapping")
UNDESCRIBED = "undescribed"  # the dialect of a target this process does not open (compile_stream)


@dataclass(frozen=True, kw_only=True)
class TableSchema:
    """What a database says about one table (source or target)."""

    name: str
    columns: dict[str, str]  # name -> type (database's own spelling)
    pk: tuple[str, ...]
    replica_full: bool = False  # PostgreSQL REPLICA IDENTITY FULL
    unique_sets: tuple[tuple[str, ...], ...] = ()  # PK and unique constraints/indexes
    required: tuple[str, ...] = ()  # NOT NULL without default (target side)
    categories: dict[str, str] = field(default_factory=dict)  # name -> category, where known
    dialect: str = ""  # "postgresql", "sqlite", ... (target side)

    def to_json(self) -> dict[str, Any]:
        """For a transport whose apply end cannot describe the source itself (Kafka)."""
        return {"name": self.name, "columns": self.columns, "pk": list(self.pk),
                "replica_full": self.replica_full, "unique_sets": [list(u) for u in self.unique_sets],
                "required": list(self.required), "categories": self.categories, "dialect": self.dialect}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TableSchema:
        return cls(name=str(body["name"]), columns={str(k): str(v) for k, v in body["columns"].items()},
                   pk=tuple(body["pk"]), replica_full=bool(body.get("replica_full")),
                   unique_sets=tuple(tuple(u) for u in body.get("unique_sets") or ()),
                   required=tuple(body.get("required") or ()),
                   categories={str(k): str(v) for k, v in (body.get("categories") or {}).items()},
                   dialect=str(body.get("dialect") or ""))

    def category(self, column: str) -> str:
        """The column's type category (see `type_category`)."""
        cat = self.categories.get(column)
        return cat if cat is not None else type_category(self.columns.get(column, ""))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge,
    "lt": operator.lt, "lte": operator.le,
    "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
}


# Categories: bool int float num money text date dt time timetz interval bytes uuid inet json
# array enum other, or unknown (no type said, or a name we cannot read). Describers give
# them from the catalog (PostgreSQL typcategory of the base type, so a domain is its base)
# or from SQLAlchemy's type classes; `type_category` reads a type name when nothing better
# is known, word by word (INTERVAL and POINT are not INT).
_NAMES = {
    "bool": ("BOOL", "BOOLEAN"),
    "int": ("SMALLINT", "INTEGER", "INT", "INT2", "INT4", "INT8", "BIGINT", "TINYINT", "MEDIUMINT",
            "SERIAL", "SMALLSERIAL", "BIGSERIAL", "SERIAL4", "SERIAL8", "OID"),
    "float": ("REAL", "FLOAT", "FLOAT4", "FLOAT8", "DOUBLE", "DOUBLE PRECISION"),
    "num": ("NUMERIC", "DECIMAL"),
    "money": ("MONEY",),
    "text": ("TEXT", "VARCHAR", "CHARACTER VARYING", "CHAR", "CHARACTER", "BPCHAR", "NAME",
             "CITEXT", "NVARCHAR", "NCHAR", "CLOB", "STRING"),
    "date": ("DATE",),
    "dt": ("TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITHOUT TIME ZONE", "TIMESTAMP WITH TIME ZONE",
           "DATETIME"),
    "time": ("TIME", "TIME WITHOUT TIME ZONE"),
    "timetz": ("TIMETZ", "TIME WITH TIME ZONE"),
    "interval": ("INTERVAL",),
    "bytes": ("BYTEA", "BLOB", "BINARY", "VARBINARY"),
    "uuid": ("UUID",),
    "inet": ("INET", "CIDR", "MACADDR", "MACADDR8"),
    "json": ("JSON", "JSONB"),
    "other": ("POINT", "LINE", "LSEG", "BOX", "PATH", "POLYGON", "CIRCLE", "BIT", "VARBIT",
              "BIT VARYING", "XML", "TSVECTOR", "TSQUERY", "INT4RANGE", "INT8RANGE", "NUMRANGE",
              "TSRANGE", "TSTZRANGE", "DATERANGE"),
}
_BY_NAME = {name: cat for cat, names in _NAMES.items() for name in names}
# the typcategory letters of pg_type that decide alone
_PG_LETTERS = {"A": "array", "B": "bool", "E": "enum", "I": "inet", "S": "text", "T": "interval"}
_PG_NAMES = {"int2": "int", "int4": "int", "int8": "int", "oid": "int", "float4": "float",
             "float8": "float", "numeric": "num", "money": "money", "date": "date",
             "timestamp": "dt", "timestamptz": "dt", "time": "time", "timetz": "timetz",
             "json": "json", "jsonb": "json", "uuid": "uuid", "bytea": "bytes"}


def type_category(type_name: str) -> str:
    """The category of a type from its name alone (see above); unknown if it has none."""
    t = " ".join(re.sub(r"\([^)]*\)", " ", type_name.upper()).split())
    if not t:
        return "unknown"
    if t.endswith("[]") or t.startswith("ARRAY"):
        return "array"
    if t.startswith("INTERVAL"):  # INTERVAL DAY TO SECOND
        return "interval"
    # whole name, else its first word ("INTEGER UNSIGNED"); a name we do not know (an enum
    # or a domain, named by its owner) says nothing
    return _BY_NAME.get(t) or _BY_NAME.get(t.split()[0], "unknown")


def pg_category(typcategory: str, typname: str) -> str:
    """The category of a PostgreSQL base type from pg_type (typcategory, typname)."""
    return _PG_LETTERS.get(typcategory) or _PG_NAMES.get(typname, "other")


# Types whose value travels as PostgreSQL's own text (exact; the target parses it back):
# into a text column that text is stored as is.
_AS_TEXT = frozenset({"money", "date", "dt", "time", "timetz", "interval", "uuid", "inet",
                      "json", "array", "enum", "other"})
# (source category, target category) -> the converter to suggest; these lose or break data
_NEEDS_CONVERTER = {
    ("num", "int"): "decimal_to_cents (money) or to_int", ("float", "int"): "to_int",
    ("text", "int"): "to_int", ("text", "num"): "a numeric converter", ("bool", "int"): "bool_to_int",
    ("int", "bool"): "int_to_bool", ("text", "bool"): "to_bool", ("int", "text"): "to_str",
    ("num", "text"): "to_str",
}
_FIRST_CATEGORIES = frozenset({"bool", "int", "float", "num", "text", "date", "dt"})
# text the target parses itself (a value it cannot parse is dead-lettered with the reason)
_PARSED_FROM_TEXT = frozenset({"enum", "uuid", "inet", "json", "interval", "time", "timetz"})


def type_problem(src_cat: str, tgt_cat: str, *, target_dialect: str = "") -> str | None:
    """Why a value of `src_cat` cannot go unconverted into a `tgt_cat` column exactly, or None."""
    if src_cat == "unknown" or tgt_cat == "unknown":
        return None
    if target_dialect == "sqlite" and tgt_cat == "json":
        return ("SQLite's JSON column re-serializes the value, so it would not keep the source's text; "
                "declare the target column TEXT (the JSON text is then stored byte for byte)")
    if src_cat == tgt_cat or (src_cat in _FIRST_CATEGORIES and tgt_cat in _FIRST_CATEGORIES):
        return None  # (pairs that need one of the converters are in _NEEDS_CONVERTER)
    if tgt_cat == "text" and src_cat in _AS_TEXT:
        return None  # PostgreSQL's text form of the value, stored as is
    if src_cat == "text" and tgt_cat in _PARSED_FROM_TEXT:
        return None
    return (f"a {src_cat} value has no exact form in a {tgt_cat} column; give the target column the "
            f"source's type ({src_cat}), or text to keep PostgreSQL's text of it, or drop the column")


def _cond_ok(cond: Condition, value: Any) -> bool:
    if cond.op == "is_null":
        return value is None
    if cond.op == "not_null":
        return value is not None
    if value is None:
        return False
    try:
        return bool(_OPS[cond.op](value, cond.value))
    except TypeError:  # e.g. Decimal vs str: compare as text
        return bool(_OPS[cond.op](str(value), cond.value if isinstance(cond.value, list) else str(cond.value)))


@dataclass(kw_only=True)
class TableMapping:
    """One source table compiled against its target: what the sink and verify use."""

    spec: TableMap
    source_schema: TableSchema
    target_schema: TableSchema
    key: tuple[str, ...]  # source key columns
    columns: list[tuple[str, str, str | None]]  # (source col, target col, converter)
    ignored: set[str]  # source columns deliberately not copied

    @property
    def source(self) -> str:
        return self.spec.source

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def key_orders_alike(self) -> bool:
        """Integer or uuid keys: ordered and compared alike in every database and in Python
        (text keys sort by each database's collation), so key ranges mean the same on both."""
        return all(self.source_schema.category(k) in ("int", "uuid") for k in self.key)

    @property
    def target_key(self) -> tuple[str, ...]:
        by_src = {s: t for s, t, _ in self.columns}
        return tuple(by_src[k] for k in self.key)

    def __post_init__(self) -> None:
        self._plain = [(s, t) for s, t, c in self.columns if c is None]
        # an unknown converter is reported by compile_stream; this object is then discarded
        self._converted = [(s, t, convert.CONVERTERS[c].fn if c in convert.CONVERTERS else str)
                           for s, t, c in self.columns if c is not None]

    @property
    def converted(self) -> list[tuple[str, str, Callable[[Any], Any]]]:
        """(source column, target column, conversion) of the converted columns."""
        return self._converted

    def to_target(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Target columns for the source columns present in `row` (absent stay absent)."""
        out = {t: row[s] for s, t in self._plain if s in row}
        for s, t, fn in self._converted:
            if s in row:
                v = row[s]
                out[t] = None if v is None else fn(v)
        return out

    def key_to_target(self, key: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for src, tgt, conv in self.columns:
            if src in key:
                out[tgt] = convert.apply(conv, key[src]) if conv else key[src]
        return out

    def matches(self, row: Mapping[str, Any], unknown: tuple[str, ...] = ()) -> bool:
        """Whether `row` passes the filter; conditions on `unknown` columns (unchanged TOAST,
        not in the image) are left to the target: a row it holds passed them already."""
        return all(_cond_ok(c, row.get(c.column)) for c in self.spec.filter
                   if not unknown or c.column not in unknown)

    def check_relation(self, columns: Mapping[str, str], *,
                       current: Callable[[], Mapping[str, str]] | None = None,
                       at: str = "") -> list[str]:
        """Raise SchemaChanged unless `columns` (name -> type) is still covered.

        `columns` is the table as of this point of the stream. If it does not fit the mapping
        and differs from the table as it is now (`current()`), it is history: the stream is
        replaying changes made before DDL that happened while it was stopped, and the mapping
        (checked against today's table) is right for what comes after; such rows are applied
        without the columns they did not have yet. Otherwise new columns follow
        ``new_columns``: stop, ignore, or copy (same name; the target must have it). Returns
        the columns added to the mapping by ``copy``.
        """
        known = self.source_schema.columns
        problems, added = self._relation_problems(columns)
        if problems and current is not None:
            now = dict(current())
            if dict(columns) != now:
                self._accept_history(columns, now, at)
                return []
        if problems:
            where = f" at {at}" if at else ""
            raise SchemaChanged(
                f"source table {self.source!r} changed{where}: {'; '.join(problems)}. The stream "
                f"stopped with its position kept; update streams.yaml (tables.{self.source}: "
                "columns/drop, or new_columns: ignore|copy) and the target schema, then run it again"
            )
        for col in columns:
            if col not in known:
                if col in added:
                    self.columns.append((col, col, None))
                    self._plain.append((col, col))
                else:
                    self.ignored.add(col)
                known[col] = columns[col]
        return added

    def _relation_problems(self, columns: Mapping[str, str]) -> tuple[list[str], list[str]]:
        """(what no longer fits the mapping, new columns that ``copy`` would add)."""
        known = self.source_schema.columns
        problems, added = [], []
        for src, _tgt, _conv in self.columns:
            if src not in columns:
                problems.append(f"mapped column {src!r} is gone")
            elif known.get(src) and columns[src] != known[src]:
                problems.append(f"column {src!r} changed type {known[src]} -> {columns[src]}")
        mapped = {s for s, _t, _c in self.columns}
        for col in columns:
            if col in known or col in self.ignored or col in mapped:
                continue
            policy = self.spec.new_columns
            if policy == "stop":
                problems.append(f"new column {col!r} ({columns[col]}) is not in the mapping")
            elif (policy == "copy" and self.target_schema.dialect != UNDESCRIBED
                  and col not in self.target_schema.columns):  # else the apply end checks it
                problems.append(f"new column {col!r} (new_columns: copy) has no column of that name "
                                f"in target table {self.target!r}")
            elif policy == "copy":
                added.append(col)
        return problems, added

    def _accept_history(self, columns: Mapping[str, str], now: Mapping[str, str], at: str) -> None:
        """Replaying rows from before later DDL: fine unless they cannot be applied."""
        problems, notes = [], []
        for src, tgt, _conv in self.columns:
            if src in columns:
                old, new = columns[src], now.get(src, columns[src])
                if old != new and type_category(old) != type_category(new):
                    problems.append(f"column {src!r} was {old} here and is {new} now, so these rows "
                                    "carry values of another kind; re-copy instead: `strangler cdc "
                                    f"drop` the stream and run it again")
            elif src in self.key:
                problems.append(f"key column {src!r} did not exist yet")
            elif tgt in self.target_schema.required:
                problems.append(f"column {src!r} did not exist yet, but target column "
                                f"{self.target}.{tgt} is NOT NULL without a default; give it a "
                                "default (or make it nullable) and run again")
            else:
                notes.append(f"{src!r} added later")
        notes += [f"{c!r} dropped later" for c in columns if c not in now]
        if problems:
            raise SchemaChanged(
                f"source table {self.source!r}: replaying changes made before a schema change "
                f"(at {at or 'the stream position'}): {'; '.join(problems)}. The stream stopped "
                "with its position kept")
        log.warning("%s: replaying changes made before a schema change (%s); rows of that time "
                    "are applied without the columns they lacked. If a column was added with a "
                    "default, rows not changed since keep the target's value: re-copy them with "
                    "`strangler cdc snapshot <stream> %s`", self.source, ", ".join(notes) or "types",
                    self.source)

def _undescribed(name: str) -> TableSchema:
    return TableSchema(name=name, columns={}, pk=(), dialect=UNDESCRIBED)


def compile_stream(
    cfg: StreamConfig,
    source: Mapping[str, TableSchema],
    target: Mapping[str, TableSchema] | None,
    *,
    source_kind: str = "postgres",
) -> dict[str, TableMapping]:
    """Check every table of `cfg` against both schemas; all problems in one ConfigError.

    Without `target` (a capture end that runs apart and never opens the target) only the
    source side is checked; the apply end checks the rest against the target it writes.
    """
    errors: list[str] = []
    out: dict[str, TableMapping] = {}
    for spec in cfg.tables:
        path = f"streams.{cfg.name}.tables.{spec.source}"
        before = len(errors)
        tm = _compile_table(spec, path, source, target, source_kind, errors)
        if tm is not None and len(errors) == before:
            out[spec.source] = tm
    if errors:
        raise ConfigError("", "the mapping does not fit the schemas:\n  " + "\n  ".join(errors))
    return out


def _compile_table(spec: TableMap, path: str, source: Mapping[str, TableSchema],
                   target: Mapping[str, TableSchema] | None, source_kind: str,
                   errors: list[str]) -> TableMapping | None:
    src = source.get(spec.source)
    if src is None:
        errors.append(f"{path}: no table {spec.source!r} in the source database; it has: "
                      + (", ".join(sorted(source)) or "(no tables)"))
        return None
    tgt = target.get(spec.target) if target is not None else _undescribed(spec.target)
    if tgt is None:
        errors.append(f"{path}.target: no table {spec.target!r} in the target database; create it "
                      "(the service's migrations) or fix the name; it has: "
                      + (", ".join(sorted(target or ())) or "(no tables)"))
        return None
    # The key: without one, updates and deletes cannot be applied (and would be lost).
    if spec.key is None:
        if not src.pk:
            errors.append(
                f"{path}: source table {spec.source!r} has no primary key, so its updates and "
                "deletes cannot be matched to target rows. Add a primary key, or declare "
                "`key: [columns]` (unique, not null)"
                + (" and run ALTER TABLE ... REPLICA IDENTITY FULL" if source_kind == "postgres" else "")
            )
            return None
        key = src.pk
    else:
        key = spec.key
        for k in key:
            if k not in src.columns:
                errors.append(f"{path}.key: {k!r} is not a column of {spec.source!r}")
                return None
        if source_kind == "postgres" and tuple(key) != tuple(src.pk) and not src.replica_full:
            errors.append(f"{path}.key: {spec.source!r} is keyed on {list(src.pk) or 'nothing'} in "
                          f"PostgreSQL; a different key needs ALTER TABLE {spec.source} REPLICA "
                          "IDENTITY FULL so deletes carry it")
    # Columns: explicit mapping must cover every source column; default copies all.
    # A column `new_columns` covers (one it accepted while the stream ran, say) is followed
    # the same way when the stream starts again: copied to the same name, or ignored.
    columns: list[tuple[str, str, str | None]]
    ignored = set(spec.drop)
    if spec.columns is None:
        columns = []
        for c in src.columns:
            if c in spec.drop:
                continue
            if spec.new_columns == "ignore" and target is not None and c not in tgt.columns:
                log.info("%s: column %s is not in target table %s: ignored (new_columns: ignore)",
                         spec.source, c, spec.target)
                ignored.add(c)
                continue
            columns.append((c, c, None))
    else:
        columns = [(c.source, c.target, c.convert) for c in spec.columns]
        listed = {c.source for c in spec.columns} | set(spec.drop)
        for c in src.columns:
            if c in listed:
                continue
            if spec.new_columns == "copy" and (target is None or c in tgt.columns):
                log.info("%s: column %s is not listed: copied to %s.%s (new_columns: copy)",
                         spec.source, c, spec.target, c)
                columns.append((c, c, None))
            elif spec.new_columns == "ignore":
                log.info("%s: column %s is not listed: ignored (new_columns: ignore)", spec.source, c)
                ignored.add(c)
            else:
                also = (f", and target table {spec.target!r} has no column of that name to copy it to "
                        "(new_columns: copy)" if spec.new_columns == "copy" else "")
                errors.append(f"{path}.columns: source column {c!r} is neither mapped nor dropped{also}; "
                              f"add `{c}: <target column>` under columns or list it in drop")
    for c in spec.drop:
        if c not in src.columns:
            errors.append(f"{path}.drop: {c!r} is not a column of {spec.source!r}")
    seen_targets: set[str] = set()
    for s, t, conv in columns:
        cpath = f"{path}.columns.{s}"
        if s not in src.columns:
            errors.append(f"{cpath}: {spec.source!r} has no column {s!r}; it has: "
                          + ", ".join(src.columns))
        if t not in tgt.columns and target is not None:
            errors.append(f"{cpath}: target table {spec.target!r} has no column {t!r}; add it (the "
                          f"service's migration), map {s!r} to one of its columns or list it in drop; "
                          "it has: " + ", ".join(tgt.columns))
        if t in seen_targets:
            errors.append(f"{cpath}: target column {t!r} is written by two source columns")
        seen_targets.add(t)
        if conv is None and s in src.columns and t in tgt.columns and target is not None:
            pair = (src.category(s), tgt.category(t))
            problem = type_problem(*pair, target_dialect=tgt.dialect)
            if pair in _NEEDS_CONVERTER:
                errors.append(f"{cpath}: {src.columns[s]} -> {tgt.columns[t]} needs a conversion; "
                              f"write `{s}: {{to: {t}, convert: {_NEEDS_CONVERTER[pair].split()[0]}}}` "
                              f"(suggested: {_NEEDS_CONVERTER[pair]})")
            elif problem:
                errors.append(f"{cpath}: {src.columns[s]} -> {tgt.columns[t]} (target "
                              f"{spec.target}.{t}) cannot be copied exactly: {problem}")
        if conv is not None and conv not in convert.CONVERTERS:
            errors.append(f"{cpath}.convert: unknown converter {conv!r}; known: "
                          + ", ".join(sorted(convert.CONVERTERS)))
    mapped = {s: t for s, t, _ in columns}
    for k in key:
        if k not in mapped:
            errors.append(f"{path}.columns: key column {k!r} must be mapped, not dropped")
    for req in tgt.required:
        if req not in seen_targets:
            errors.append(f"{path}.columns: target column {spec.target}.{req} is NOT NULL without "
                          "a default but no source column maps to it; map one or give it a default")
    target_key = tuple(mapped.get(k, "") for k in key)
    if target is not None and all(target_key) and not any(set(u) == set(target_key) for u in tgt.unique_sets):
        errors.append(f"{path}.target: {spec.target!r} needs a primary key or unique constraint on "
                      f"{list(target_key)} (the mapped key) for upserts")
    for cond in spec.filter:
        if cond.column not in src.columns:
            errors.append(f"{path}.filter: {cond.column!r} is not a column of {spec.source!r}")
    return TableMapping(spec=spec, source_schema=src, target_schema=tgt, key=tuple(key),
                        columns=columns, ignored=ignored)
