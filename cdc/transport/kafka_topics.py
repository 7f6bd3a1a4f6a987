"""A Kafka stream's settings (the ``transport:`` block of streams.yaml) and its topics.

Topics follow Debezium: one per source table, ``<prefix>.<schema>.<table>``, and with
``transaction_metadata: true`` Debezium's ``<prefix>.transaction``; ours are
``__strangler-control.<prefix>`` (the order of transactions and our control records),
``__strangler-schema.<prefix>`` (compacted: each source table's latest schema, so the apply
end never connects to the source), ``__strangler-capture.<prefix>`` (compacted: where the
capture end left off, so it never opens the target) and ``<topic>.dlq`` per table for dead
letters. Each has exactly one partition, so one table's
changes — and the control records that order them across tables — keep their order.

Durability comes from the topic settings, checked against the broker at start:

    replication_factor   copies of each partition; default min(3, brokers)
    min_insync_replicas  copies that must have a message before it is acknowledged (the
                         producer uses acks=all); default 2 when there are 3 copies or
                         more, else 1. The source advances only past acknowledged messages.
    compression          the producer's codec and the topics' ``compression.type``
                         (none, gzip, snappy, lz4, zstd); default lz4
    topic_config         any other topic settings (``retention.ms``…), passed through

An existing topic with more than one partition, fewer copies or a lower
``min.insync.replicas`` than asked is refused with the fix: it would silently weaken the
ordering or the durability the source relies on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cdc.errors import CDCError, ConfigError
from cdc.transport.debezium_values import Modes
from cdc.transport.kafka_values import DEFAULT_MODES

ENV_BOOTSTRAP = "STRANGLER_KAFKA_BOOTSTRAP"
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
TX_SUFFIX = "transaction"
CONTROL_PREFIX = "__strangler-control."
SCHEMA_PREFIX = "__strangler-schema."
CAPTURE_PREFIX = "__strangler-capture."
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
# streams.yaml key -> field of debezium_values.Modes (Debezium's property with dots)
MODE_KEYS = {"decimal_handling_mode": "decimal", "time_precision_mode": "time",
             "binary_handling_mode": "binary", "interval_handling_mode": "interval"}
KEYS = ("kind", "bootstrap", "topic_prefix", "group", "linger_ms", "replication_factor",
        "min_insync_replicas", "compression", "topic_config", "lease_seconds", "transaction_metadata",
        "tombstones_on_delete", "schemas_enable", *MODE_KEYS)


class KafkaTransportError(CDCError):
    """Kafka refused or lost something; the process stops and resumes from its checkpoints."""


def _positive_int(raw: dict[str, Any], key: str, path: str, default: int | None, upto: int) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= upto:
        raise ConfigError(f"{path}.{key}", f"must be an integer in 1..{upto}, not {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    """The ``transport:`` block of a stream in streams.yaml for ``kind: kafka``."""

    stream: str
    bootstrap: str
    topic_prefix: str
    group: str
    default_schema: str = "public"
    linger_ms: int = 5
    replication_factor: int | None = None  # None: min(3, brokers)
    min_insync_replicas: int | None = None  # None: from the replication factor
    compression: str = "lz4"
    topic_config: dict[str, str] = field(default_factory=dict)
    lease_seconds: float = 6.0
    transaction_metadata: bool = False  # Debezium's provide.transaction.metadata
    tombstones_on_delete: bool = True  # Debezium's tombstones.on.delete: compaction can drop the row
    schemas_enable: bool = False  # JsonConverter's schemas.enable: {"schema", "payload"} (kafka_schemas.py)
    modes: Modes = DEFAULT_MODES  # Debezium's value modes (cdc/transport/kafka_values.py)

    @classmethod
    def from_stream(cls, cfg: Any) -> KafkaSettings:
        """From a :class:`cdc.config.StreamConfig` (``transport: kafka`` or a mapping)."""
        raw = dict(cfg.transport)
        path = f"streams.{cfg.name}.transport"
        for key in raw:
            if key not in KEYS:
                raise ConfigError(f"{path}.{key}", f"unknown key; allowed: {', '.join(sorted(KEYS))}")
        if raw.get("kind") != "kafka":
            raise ConfigError(f"{path}.kind", f"is {raw.get('kind')!r}, not kafka")
        values: dict[str, str] = {}
        for key, default in (("bootstrap", os.environ.get(ENV_BOOTSTRAP) or DEFAULT_BOOTSTRAP),
                             ("topic_prefix", cfg.name), ("group", "")):
            # the group follows the topics: one group per set of topics, unless told
            value = raw.get(key, default or f"strangler-{values.get('topic_prefix', cfg.name)}")
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}.{key}", f"must be a non-empty string, not {value!r}")
            values[key] = value.strip()
        if not all(c.isalnum() or c in "._-" for c in values["topic_prefix"]):
            raise ConfigError(f"{path}.topic_prefix", "may hold only letters, digits, '.', '_', '-'")
        linger = raw.get("linger_ms", 5)
        if not isinstance(linger, int) or isinstance(linger, bool) or not 0 <= linger <= 1000:
            raise ConfigError(f"{path}.linger_ms", f"must be an integer in 0..1000, not {linger!r}")
        rf = _positive_int(raw, "replication_factor", path, None, 32)
        isr = _positive_int(raw, "min_insync_replicas", path, None, 32)
        if rf is not None and isr is not None and isr > rf:
            raise ConfigError(f"{path}.min_insync_replicas",
                              f"is {isr}, more than replication_factor {rf}: no write could ever succeed")
        codec = raw.get("compression", "lz4")
        if codec not in CODECS:
            raise ConfigError(f"{path}.compression", f"must be one of {', '.join(CODECS)}, not {codec!r}")
        extra = raw.get("topic_config", {})
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise ConfigError(f"{path}.topic_config", "must be a mapping of Kafka topic settings, "
                              "e.g. {retention.ms: 604800000}")
        for key in ("min.insync.replicas", "compression.type", "cleanup.policy"):
            if key in extra:
                raise ConfigError(f"{path}.topic_config.{key}",
                                  "is set by the stream (min_insync_replicas, compression; cleanup is "
                                  "always delete: compaction would drop changes)")
        lease = raw.get("lease_seconds", 6)
        if not isinstance(lease, (int, float)) or isinstance(lease, bool) or not 1 <= lease <= 300:
            raise ConfigError(f"{path}.lease_seconds", f"must be a number of seconds in 1..300, not {lease!r}")
        flags = {}
        for key, default in (("transaction_metadata", False), ("tombstones_on_delete", True),
                             ("schemas_enable", False)):
            flags[key] = raw.get(key, default)
            if not isinstance(flags[key], bool):
                raise ConfigError(f"{path}.{key}", f"must be true or false, not {flags[key]!r}")
        chosen = {field: raw[key] for key, field in MODE_KEYS.items() if key in raw}
        try:
            modes = replace(DEFAULT_MODES, **chosen)
        except ValueError as exc:
            key = next(k for k, f in MODE_KEYS.items() if str(exc).startswith(f))
            raise ConfigError(f"{path}.{key}", str(exc)) from None
        return cls(stream=cfg.name, **flags, modes=modes, bootstrap=values["bootstrap"], topic_prefix=values["topic_prefix"],
                   group=values["group"], linger_ms=linger, replication_factor=rf,
                   min_insync_replicas=isr, compression=codec,
                   topic_config={k: str(v) for k, v in extra.items()}, lease_seconds=float(lease),
                   default_schema="main" if cfg.source_kind == "sqlite" else "public")

    def collection(self, table: str) -> str:
        """Debezium's data collection name, ``<schema>.<table>``."""
        ns, _, name = table.rpartition(".")
        return f"{ns or self.default_schema}.{name}"

    def topic(self, table: str) -> str:
        """``<prefix>.<schema>.<table>`` for a source table (``ns.name`` or ``name``)."""
        return f"{self.topic_prefix}.{self.collection(table)}"

    @property
    def tx_topic(self) -> str:
        return f"{self.topic_prefix}.{TX_SUFFIX}"

    @property
    def control_topic(self) -> str:
        return f"{CONTROL_PREFIX}{self.topic_prefix}"

    @property
    def schema_topic(self) -> str:
        """Compacted: the latest schema of each source table, keyed by table, for the apply end."""
        return f"{SCHEMA_PREFIX}{self.topic_prefix}"

    @property
    def capture_topic(self) -> str:
        """Compacted: the capture end's progress (cdc/transport/kafka_progress.py)."""
        return f"{CAPTURE_PREFIX}{self.topic_prefix}"

    @property
    def compacted(self) -> tuple[str, str]:
        return self.schema_topic, self.capture_topic

    def topics(self, tables: Sequence[str]) -> list[str]:
        """Every topic of the stream: control, schema, capture progress, one per table, one
        dead-letter per table, and Debezium's transaction topic if asked for."""
        data = [self.topic(t) for t in tables]
        meta = [self.tx_topic] if self.transaction_metadata else []
        return [self.control_topic, *self.compacted, *meta, *data, *(f"{t}.dlq" for t in data)]

    def durability(self, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) for a cluster of `brokers`."""
        rf = self.replication_factor or min(3, brokers)
        isr = self.min_insync_replicas or (2 if rf >= 3 else 1)
        return rf, isr


def ensure_topics(settings: KafkaSettings, tables: Sequence[str]) -> None:
    """Create the stream's topics if missing, and check those that exist (see the module)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    try:
        meta = admin.list_topics(timeout=30)
    except KafkaException as exc:
        raise KafkaTransportError(f"Kafka at {settings.bootstrap} is not reachable: {exc.args[0].str()}; "
                                  f"start it or set transport.bootstrap") from exc
    brokers = len(meta.brokers)
    rf, isr = settings.durability(brokers)
    path = f"streams.{settings.stream}.transport"
    if rf > brokers:
        raise KafkaTransportError(
            f"{path}.replication_factor is {rf} but the cluster at {settings.bootstrap} has {brokers} "
            f"broker{'s' if brokers != 1 else ''}: add brokers or set replication_factor: {brokers}")
    config = {"min.insync.replicas": str(isr), "compression.type": settings.compression,
              "cleanup.policy": "delete", **settings.topic_config}
    if settings.compression == "none":
        config["compression.type"] = "uncompressed"
    names = settings.topics(tables)
    missing = [n for n in names if n not in meta.topics]
    if missing:
        compacted = {**config, "cleanup.policy": "compact"}
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=1, replication_factor=rf,
                      config=compacted if n in settings.compacted else config) for n in missing],
            operation_timeout=30, request_timeout=30)
        for name, fut in futures.items():
            try:
                fut.result(timeout=60)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaTransportError(f"cannot create Kafka topic {name} at {settings.bootstrap} "
                                              f"(replication factor {rf}, {config}): {err.str()}") from exc
        meta = _listing(admin, names)
    _check_existing(admin, meta, names, rf, isr, path)


def read_compacted(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[str, bytes]:
    """The latest value of each key of a one-partition compacted topic, read to its end
    (a key whose latest record is a tombstone is absent). KafkaTransportError if it cannot
    be read within `timeout` seconds (a topic just created has no leader for a moment)."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    deadline = time.monotonic() + timeout
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": settings.group,
                         "enable.auto.commit": False, "enable.partition.eof": True})
    found: dict[str, bytes] = {}
    try:
        while True:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
                break
            except KafkaException as exc:
                if exc.args[0].fatal() or time.monotonic() > deadline:
                    raise KafkaTransportError(f"cannot read Kafka topic {topic}: {exc.args[0].str()}") from exc
                time.sleep(0.2)
        if high <= low:
            return found
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        position = low
        while position < high:
            if time.monotonic() > deadline:
                raise KafkaTransportError(f"could not read Kafka topic {topic} to its end (offset {high}) "
                                          f"within {timeout:.0f}s; at {position}")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    break  # the end (compaction may have removed the last offsets' tombstones)
                if err.fatal():
                    raise KafkaTransportError(f"cannot read Kafka topic {topic}: {err.str()}")
                continue
            position = int(msg.offset() or 0) + 1
            key, value = msg.key(), msg.value()
            if key is None:
                continue
            if value is None:
                found.pop(key.decode(), None)
            else:
                found[key.decode()] = value
        return found
    finally:
        consumer.close()


def _listing(admin: Any, names: list[str], timeout: float = 30.0) -> Any:
    """The cluster's metadata once it lists every one of `names` (a broker learns of a topic
    just created a moment after the controller answered)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=30)
        missing = [n for n in names if n not in meta.topics or not meta.topics[n].partitions]
        if not missing:
            return meta
        if time.monotonic() > deadline:
            raise KafkaTransportError(f"Kafka topics {', '.join(missing)} are still missing "
                                      f"{timeout:.0f}s after they were created")
        time.sleep(0.1)


def _check_existing(admin: Any, meta: Any, names: list[str], rf: int, isr: int, path: str) -> None:
    from confluent_kafka.admin import ConfigResource

    for name in names:
        parts = meta.topics[name].partitions
        if len(parts) != 1:
            raise KafkaTransportError(
                f"Kafka topic {name} has {len(parts)} partitions; a stream's topics need exactly one "
                f"(one table's changes stay in order only within a partition): recreate it with one "
                f"partition, or give the stream another {path}.topic_prefix")
        copies = len(next(iter(parts.values())).replicas)
        if copies < rf:
            raise KafkaTransportError(
                f"Kafka topic {name} has {copies} replica{'s' if copies != 1 else ''}, fewer than "
                f"{path}.replication_factor {rf}: raise it with kafka-reassign-partitions, or set "
                f"replication_factor: {copies}")
    from confluent_kafka import KafkaError, KafkaException

    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    for res, fut in admin.describe_configs(resources, request_timeout=30).items():
        try:
            entry = fut.result(timeout=60).get("min.insync.replicas")
        except KafkaException as exc:
            gone = exc.args and getattr(exc.args[0], "code", lambda: None)() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if gone:  # listed a moment ago, deleted since (or still being deleted)
                raise KafkaTransportError(
                    f"Kafka topic {res.name} vanished while it was checked (deleted meanwhile?): start "
                    f"the stream again once the deletion is over; if messages were lost with it, the "
                    f"apply side says so and `strangler verify STREAM --repair` mends the target") from None
            raise KafkaTransportError(f"cannot read Kafka topic {res.name}'s settings: {exc}") from None
        have = int(entry.value) if entry is not None and entry.value is not None else 1
        if have < isr:
            raise KafkaTransportError(
                f"Kafka topic {res.name} has min.insync.replicas={have}, below the stream's {isr}: an "
                f"acknowledged change could still be lost with one broker. Raise it (kafka-configs "
                f"--alter --add-config min.insync.replicas={isr}) or set {path}.min_insync_replicas: {have}")


__all__ = ["DEFAULT_BOOTSTRAP", "ENV_BOOTSTRAP", "KafkaSettings", "KafkaTransportError", "ensure_topics",
           "read_compacted"]
