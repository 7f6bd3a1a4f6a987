"""streams.yaml: the declared CDC streams, loaded into frozen, validated config objects.

This module checks the file's shape (every error names its key path and the fix). Checking
a mapping against the real source and target schemas is :mod:`cdc.mapping`'s job, done
before a stream starts. The format is documented at the top of ``streams.yaml`` and in the
README ("Change-data-capture streams").
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from cdc.errors import ConfigError
from cdc.origin import origin_name

DEFAULT_PATH = "streams.yaml"
ENV_OWNERSHIP = "STRANGLER_OWNERSHIP"  # the ownership file, overriding streams.yaml's `ownership:`
ENV_PATH = "STRANGLER_STREAMS"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
FILTER_OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "is_null", "not_null")
NEW_COLUMN_POLICIES = ("stop", "ignore", "copy")
INITIAL_MODES = ("copy", "none")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, kw_only=True)
class ColumnMap:
    """One source column's fate: copied to ``target`` (optionally converted)."""

    source: str
    target: str
    convert: str | None = None


@dataclass(frozen=True, kw_only=True)
class Condition:
    column: str
    op: str
    value: Any = None


@dataclass(frozen=True, kw_only=True)
class TableMap:
    """How one source table lands in the target."""

    source: str
    target: str
    key: tuple[str, ...] | None = None  # None: the source table's primary key
    columns: tuple[ColumnMap, ...] | None = None  # None: every column, same name
    drop: tuple[str, ...] = ()
    filter: tuple[Condition, ...] = ()
    new_columns: str = "stop"


@dataclass(frozen=True, kw_only=True)
class StreamConfig:
    name: str
    source_url: str
    target_url: str
    tables: tuple[TableMap, ...]
    owner: str = ""
    slot: str = ""
    publication: str = ""
    transport: dict[str, Any] = field(default_factory=lambda: {"kind": "direct"})
    batch_size: int = 2000
    snapshot_chunk: int = 5000
    # issue 11: the ownership file (ownership/__init__.py) beside streams.yaml; may not exist
    ownership_path: str = ""
    # first start: copy the tables, or (none) only create the capture point and stream from now
    initial: str = "copy"
    # streams whose sink writes into this stream's source came from its target: not captured
    # (no echo). Computed from the file's streams unless `source.skip_origins` gives them.
    skip_origins: tuple[str, ...] = ()
    skip_explicit: bool = False

    @property
    def skip_origin_names(self) -> tuple[str, ...]:
        """The PostgreSQL replication origins whose changes are skipped (SQLite markers hold
        the bare stream names, ``skip_origins``)."""
        return tuple(origin_name(s) for s in self.skip_origins)

    @property
    def source_kind(self) -> str:
        return "sqlite" if self.source_url.startswith("sqlite") else "postgres"

    def table(self, name: str) -> TableMap:
        for t in self.tables:
            if t.source == name:
                return t
        raise ConfigError(
            f"streams.{self.name}.tables", f"no table {name!r}; this stream has: "
            + ", ".join(t.source for t in self.tables)
        )


@dataclass(frozen=True, kw_only=True)
class StreamsFile:
    path: str
    streams: dict[str, StreamConfig]
    # issue 11: `ownership:` (relative to this file), default ownership.yaml beside it.
    # A missing file means no ownership is declared: everything is writable, no guards.
    ownership_path: str = ""

    def stream(self, name: str) -> StreamConfig:
        try:
            return self.streams[name]
        except KeyError:
            known = ", ".join(sorted(self.streams)) or "(none)"
            raise ConfigError("streams", f"no stream {name!r} in {self.path}; streams: {known}") from None


def expand_env(value: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from the environment (unset without default: error)."""

    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise KeyError(var)

    return _ENV_RE.sub(sub, value)


def load(path: str | os.PathLike[str] | None = None) -> StreamsFile:
    """Read and validate streams.yaml (``STRANGLER_STREAMS`` or ./streams.yaml by default)."""
    p = Path(path or os.environ.get(ENV_PATH) or DEFAULT_PATH)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror}; create it (see README, "
                          "'Change-data-capture streams') or pass --streams") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{p} is not valid YAML: {exc}") from exc
    return parse(data, path=str(p))


def parse(data: Any, *, path: str = DEFAULT_PATH) -> StreamsFile:
    if not isinstance(data, dict):
        raise ConfigError("", "the file must be a mapping with `version: 1` and `streams:`")
    _only(data, "", {"version", "streams", "ownership"})
    if data.get("version", 1) != 1:
        raise ConfigError("version", f"unsupported version {data.get('version')!r}; use 1")
    raw = data.get("streams") or {}
    if not isinstance(raw, dict):
        raise ConfigError("streams", "must map stream names to stream definitions")
    own = os.environ.get(ENV_OWNERSHIP) or data.get("ownership", "ownership.yaml")
    if not isinstance(own, str) or not own:
        raise ConfigError("ownership", "must be the path of the ownership file (default ownership.yaml)")
    own_path = str(Path(path).absolute().parent / own) if not os.path.isabs(own) else own
    streams = {name: dataclasses.replace(_stream(name, body), ownership_path=own_path)
               for name, body in raw.items()}
    streams = {name: cfg if cfg.skip_explicit else dataclasses.replace(
        cfg, skip_origins=feeding(cfg, streams.values())) for name, cfg in streams.items()}
    return StreamsFile(path=path, streams=streams, ownership_path=own_path)


def database_identity(url: str) -> str:
    """A database's identity for comparing URLs: PostgreSQL host:port/dbname (loopback names
    alike, default port 5432), SQLite the resolved path."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else url
        return "sqlite:" + (path if path in ("", ":memory:") else os.path.realpath(path))
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = (query.get("host") or [parts.hostname or "localhost"])[0] or "localhost"
    if host in ("127.0.0.1", "::1", "[::1]"):
        host = "localhost"
    port = (query.get("port") or [str(parts.port or 5432)])[0]
    dbname = (query.get("dbname") or [unquote(parts.path.lstrip("/"))])[0] or (parts.username or "")
    return f"postgresql:{host}:{port}/{dbname}"


def feeding(cfg: StreamConfig, streams: Iterable[StreamConfig]) -> tuple[str, ...]:
    """The streams whose sinks' writes `cfg` skips: those writing into `cfg`'s source FROM
    `cfg`'s target. Carrying those back would echo them where they came from; anything
    else a sink wrote here (a chain A -> B -> C, a second feed D -> B) is captured."""
    source, target = database_identity(cfg.source_url), database_identity(cfg.target_url)
    return tuple(sorted(s.name for s in streams if s.name != cfg.name
                        and database_identity(s.target_url) == source
                        and database_identity(s.source_url) == target))


def _only(obj: dict[str, Any], path: str, allowed: set[str]) -> None:
    for k in obj:
        if k not in allowed:
            where = f"{path}.{k}" if path else str(k)
            raise ConfigError(where, f"unknown key; allowed here: {', '.join(sorted(allowed))}")


def _str(obj: dict[str, Any], key: str, path: str, *, required: bool = True, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{path}.{key}", "is required")
        return default
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}.{key}", f"must be a non-empty string, not {value!r}")
    return value


def _url(obj: dict[str, Any], path: str) -> str:
    raw = _str(obj, "url", path)
    try:
        url = expand_env(raw)
    except KeyError as exc:
        raise ConfigError(f"{path}.url", f"environment variable {exc.args[0]} is not set; "
                          "set it or write ${VAR:-default}") from None
    if not re.match(r"^(postgres(ql)?(\+psycopg2)?|sqlite)://", url):
        raise ConfigError(f"{path}.url", f"{raw!r} must be a postgresql:// or sqlite:/// URL")
    return url


def _int(obj: dict[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{path}.{key}", f"must be an integer in {lo}..{hi}, not {value!r}")
    return value


def _stream(name: Any, body: Any) -> StreamConfig:
    path = f"streams.{name}"
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(path, "stream names are lowercase letters, digits and _ (max 41)")
    if not isinstance(body, dict):
        raise ConfigError(path, "must be a mapping with source, target and tables")
    _only(body, path, {"owner", "source", "target", "transport", "tables", "batch_size",
                       "snapshot_chunk", "initial"})
    src = body.get("source")
    if not isinstance(src, dict):
        raise ConfigError(f"{path}.source", "is required: {url: postgresql://... | sqlite:///...}")
    _only(src, f"{path}.source", {"url", "slot", "publication", "skip_origins"})
    skip = src.get("skip_origins")
    if skip is not None and (not isinstance(skip, list) or not all(
            isinstance(s, str) and NAME_RE.match(s) for s in skip)):
        raise ConfigError(f"{path}.source.skip_origins", f"must be a list of stream names, not {skip!r} "
                          "(the streams whose writes into this source are not captured; [] for none)")
    initial = body.get("initial", "copy")
    if initial not in INITIAL_MODES:
        raise ConfigError(f"{path}.initial", f"must be copy (copy the tables on the first start) or "
                          f"none (the target already holds every row: stream from now), not {initial!r}")
    tgt = body.get("target")
    if not isinstance(tgt, dict):
        raise ConfigError(f"{path}.target", "is required: {url: postgresql://... | sqlite:///...}")
    _only(tgt, f"{path}.target", {"url"})
    transport = body.get("transport", "direct")
    if isinstance(transport, str):  # `${STRANGLER_CDC_TRANSPORT:-direct}`: one file for laptop and compose
        try:
            transport = {"kind": expand_env(transport).strip()}
        except KeyError as exc:
            raise ConfigError(f"{path}.transport", f"environment variable {exc.args[0]} is not set; "
                              "set it or write ${VAR:-default}") from None
    if not isinstance(transport, dict) or not isinstance(transport.get("kind"), str):
        raise ConfigError(f"{path}.transport", "must be `direct` or a mapping with `kind:`")
    tables_raw = body.get("tables")
    if not isinstance(tables_raw, dict) or not tables_raw:
        raise ConfigError(f"{path}.tables", "must map at least one source table to its target")
    tables = tuple(_table(f"{path}.tables.{t}", t, tb) for t, tb in tables_raw.items())
    targets = [t.target for t in tables]
    for t in tables:
        if targets.count(t.target) > 1:
            raise ConfigError(f"{path}.tables.{t.source}.target",
                              f"{t.target!r} is the target of more than one table; give each its own")
    return StreamConfig(
        name=name, owner=_str(body, "owner", path, required=False),
        source_url=_url(src, f"{path}.source"), target_url=_url(tgt, f"{path}.target"),
        slot=_str(src, "slot", f"{path}.source", required=False, default=f"strangler_{name}"),
        publication=_str(src, "publication", f"{path}.source", required=False,
                         default=f"strangler_{name}"),
        transport=dict(transport), tables=tables,
        batch_size=_int(body, "batch_size", path, 2000, 1, 100_000),
        snapshot_chunk=_int(body, "snapshot_chunk", path, 5000, 1, 1_000_000),
        initial=initial, skip_origins=tuple(skip or ()), skip_explicit=skip is not None,
    )


def _names(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(path, "must be a list of column names")
    return tuple(value)


def _table(path: str, source: Any, body: Any) -> TableMap:
    if body is None:
        body = {}
    if isinstance(body, str):
        body = {"target": body}
    if not isinstance(source, str) or not isinstance(body, dict):
        raise ConfigError(path, "must be a mapping (or just the target table name)")
    _only(body, path, {"target", "key", "columns", "drop", "filter", "new_columns"})
    columns: tuple[ColumnMap, ...] | None = None
    raw_cols = body.get("columns")
    if raw_cols is not None:
        if not isinstance(raw_cols, dict) or not raw_cols:
            raise ConfigError(f"{path}.columns", "must map source columns to target columns")
        cols = []
        for src, spec in raw_cols.items():
            cpath = f"{path}.columns.{src}"
            if isinstance(spec, str):
                cols.append(ColumnMap(source=src, target=spec))
            elif isinstance(spec, dict):
                _only(spec, cpath, {"to", "convert"})
                convert = spec.get("convert")
                if convert is not None and not isinstance(convert, str):
                    raise ConfigError(f"{cpath}.convert", "must be a converter name")
                cols.append(ColumnMap(source=src, target=_str(spec, "to", cpath, required=False,
                                                              default=src), convert=convert))
            else:
                raise ConfigError(cpath, "must be a target column name or {to: ..., convert: ...}")
        columns = tuple(cols)
    drop = _names(body.get("drop", []), f"{path}.drop")
    if columns is not None:
        for c in columns:
            if c.source in drop:
                raise ConfigError(f"{path}.drop", f"{c.source!r} is both mapped and dropped; pick one")
    policy = body.get("new_columns", "stop")
    if policy not in NEW_COLUMN_POLICIES:
        raise ConfigError(f"{path}.new_columns", f"must be one of {', '.join(NEW_COLUMN_POLICIES)}")
    key = body.get("key")
    return TableMap(
        source=source, target=_str(body, "target", path, required=False, default=source),
        key=_names(key, f"{path}.key") if key is not None else None,
        columns=columns, drop=drop, filter=_filter(body.get("filter"), f"{path}.filter"),
        new_columns=policy,
    )


def _filter(raw: Any, path: str) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if isinstance(raw, dict):  # shorthand {column: value} = equality
        raw = [{"column": k, "op": "eq", "value": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ConfigError(path, "must be {column: value} or a list of {column, op, value}")
    out = []
    for i, cond in enumerate(raw):
        cpath = f"{path}[{i}]"
        if not isinstance(cond, dict):
            raise ConfigError(cpath, "must be {column: ..., op: ..., value: ...}")
        _only(cond, cpath, {"column", "op", "value"})
        op = cond.get("op", "eq")
        if op not in FILTER_OPS:
            raise ConfigError(f"{cpath}.op", f"{op!r} is not one of {', '.join(FILTER_OPS)}")
        if op in ("in", "not_in") and not isinstance(cond.get("value"), list):
            raise ConfigError(f"{cpath}.value", f"`{op}` needs a list")
        out.append(Condition(column=_str(cond, "column", cpath), op=op, value=cond.get("value")))
    return tuple(out)
