"""The Kafka transport against a real broker, with events made by hand."""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from cdc.errors import ConfigError
from cdc.events import ChangeEvent, Position
from cdc.transport import Progress, Publisher, Resume, Subscriber, kafka_progress
from cdc.transport.kafka import KafkaApply, KafkaCapture, KafkaSettings
from devstack import KafkaServer

pytestmark = pytest.mark.kafka


def _settings(broker: KafkaServer, **transport: object) -> KafkaSettings:
    name = f"s{uuid.uuid4().hex[:8]}"
    cfg = SimpleNamespace(name=name, source_kind="postgres",
                          transport={"kind": "kafka", "bootstrap": broker.bootstrap, **transport})
    return KafkaSettings.from_stream(cfg)


def _ev(table: str, key: int, lsn: int, seq: int, last: bool, op: str = "c") -> ChangeEvent:
    row = {"id": key, "v": f"{table}-{key}"}
    return ChangeEvent(op=op, table=table, key={"id": key}, before=None, after=row,
                       position=Position(lsn, seq), last=last, schema="public", tx_id=lsn, ts_ms=1)


class _Sink:
    """What a sink does with batches: commit at boundaries (keeping the resume token), roll
    back when told to."""

    def __init__(self) -> None:
        self.done: list[ChangeEvent] = []
        self.resume: Resume | None = None

    def drain(self, apply: KafkaApply, n: int, seconds: float = 30) -> list[ChangeEvent]:
        """The events committed while this call waited for `n` of them (at most `seconds`)."""
        start = len(self.done)
        open_: list[ChangeEvent] = []
        deadline = time.monotonic() + seconds
        while len(self.done) - start < n and time.monotonic() < deadline:
            batch = apply.receive(1000, 0.2)
            if batch.restart:
                open_ = []
                apply.reopen(self.resume)
                continue
            open_ += batch.events
            if batch.boundary and open_:
                self.done += open_
                open_ = []
                self.resume = batch.resume
                apply.committed(self.done[-1].position, batch.resume)
        return self.done[start:]


def _drain(apply: KafkaApply, n: int, seconds: float = 30) -> list[ChangeEvent]:
    return _Sink().drain(apply, n, seconds)


def _ids(events: list[ChangeEvent]) -> list[tuple[str, int, int, int]]:
    return [(e.table, e.key["id"], e.position[0], e.position[1]) for e in events]


def test_settings_defaults_and_topic_names(monkeypatch) -> None:
    monkeypatch.setenv("STRANGLER_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    cfg = SimpleNamespace(name="catalog", source_kind="postgres", transport={"kind": "kafka"})
    s = KafkaSettings.from_stream(cfg)
    assert (s.bootstrap, s.group) == ("127.0.0.1:1", "strangler-catalog")
    assert s.topic("catalog_product") == "catalog.public.catalog_product"
    assert s.topic("shop.orders") == "catalog.shop.orders"
    assert s.tx_topic == "catalog.transaction"
    assert s.control_topic == "__strangler-control.catalog"
    assert s.topics(["t"]) == ["__strangler-control.catalog", "__strangler-schema.catalog",
                               "__strangler-capture.catalog", "catalog.public.t", "catalog.public.t.dlq"]
    lite = SimpleNamespace(name="c", source_kind="sqlite", transport={"kind": "kafka"})
    assert KafkaSettings.from_stream(lite).topic("t") == "c.main.t"


@pytest.mark.parametrize("transport, path", [
    ({"kind": "kafka", "brokers": "x"}, "streams.catalog.transport.brokers"),
    ({"kind": "kafka", "topic_prefix": "a b"}, "streams.catalog.transport.topic_prefix"),
    ({"kind": "kafka", "linger_ms": -1}, "streams.catalog.transport.linger_ms"),
])
def test_bad_settings_name_the_key(transport, path) -> None:
    cfg = SimpleNamespace(name="catalog", source_kind="postgres", transport=transport)
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        KafkaSettings.from_stream(cfg)


def test_transactions_arrive_whole_in_source_order_across_topics(kafka_broker: KafkaServer) -> None:
    s = _settings(kafka_broker, transaction_metadata=True)
    cap = KafkaCapture(s, ["parent", "child"])
    apply = KafkaApply(s, ["parent", "child"])
    assert isinstance(cap, Publisher) and isinstance(apply, Subscriber)
    try:
        tx1 = [_ev("parent", 1, 100, 1, False), _ev("child", 10, 100, 2, False),
               _ev("parent", 2, 100, 3, False), _ev("child", 11, 100, 4, True)]
        tx2 = [_ev("child", 12, 200, 1, False), _ev("parent", 3, 200, 2, True)]
        # a large transaction split over several publish calls, as a source poll splits it
        tx3 = [_ev("child" if i % 3 else "parent", 1000 + i, 300, i + 1, i == 499) for i in range(500)]
        cap.publish(tx1)
        cap.publish(tx2 + tx3[:100])
        cap.publish(tx3[100:])
        assert cap.flush(30)
        assert cap.durable() == Position(300, 500)
        got = _drain(apply, 506)
        assert _ids(got) == _ids(tx1 + tx2 + tx3)
        assert [e.last for e in got].count(True) == 3 and got[3].last and got[5].last
        assert got[0].after == {"id": 1, "v": "parent-1"}
        # the Debezium transaction block travels with every data message
        raw = Consumer({"bootstrap.servers": s.bootstrap, "group.id": uuid.uuid4().hex,
                        "auto.offset.reset": "earliest"})
        raw.subscribe([s.topic("child")])
        msg = None
        for _ in range(100):
            msg = raw.poll(0.2)
            if msg is not None and msg.error() is None:
                break
        raw.close()
        assert msg is not None and json.loads(msg.key()) == {"id": 10}
        body = json.loads(msg.value())
        assert body["op"] == "c" and body["source"]["table"] == "child"
        src = body["source"]  # Debezium's source block (and ours: index, last)
        assert (src["connector"], src["name"], src["lsn"], src["index"]) == ("postgresql", s.topic_prefix, 100, 2)
        assert src["version"].startswith("strangler-") and json.loads(src["sequence"]) == [None, "100"]
        assert src["ts_us"] == src["ts_ms"] * 1000 and body["ts_ms"] >= src["ts_ms"]
        assert body["transaction"]["total_order"] == 2
        assert body["transaction"]["data_collection_order"] == 1
        headers = dict(msg.headers() or [])  # what our apply end orders by
        assert headers["strangler.order"] == b"2" and body["transaction"]["id"] == headers["strangler.tx"].decode()
    finally:
        cap.close()
        apply.close()


def test_capture_crash_cut_transaction_dropped_and_replay_handed_once(kafka_broker: KafkaServer) -> None:
    s = _settings(kafka_broker)
    first = KafkaCapture(s, ["a", "b"])
    first.publish([_ev("a", 1, 100, 1, True)])
    first.publish([_ev("a", 2, 200, 1, False), _ev("b", 3, 200, 2, False)])  # tx 200 unfinished
    assert first.flush(30)
    assert first.durable() == Position(100, 1)  # never past what is whole in Kafka
    first.close()  # "dies"; the source replays from its acknowledged position
    time.sleep(0.01)
    second = KafkaCapture(s, ["a", "b"])
    tx200 = [_ev("a", 2, 200, 1, False), _ev("b", 3, 200, 2, False), _ev("a", 4, 200, 3, True)]
    # the slot replays from its acknowledged position: tx 100 comes again, then tx 200 whole
    second.publish([_ev("a", 1, 100, 1, True)] + tx200 + [_ev("b", 5, 300, 1, True)])
    assert second.flush(30)
    second.close()
    apply = KafkaApply(s, ["a", "b"])
    sink = _Sink()
    try:
        got = sink.drain(apply, 5)
        time.sleep(0.3)
        got += sink.drain(apply, 1, seconds=0.5)
        assert _ids(got) == _ids([_ev("a", 1, 100, 1, True), *tx200, _ev("b", 5, 300, 1, True)])
    finally:
        apply.close()


def test_restart_resumes_at_the_stored_offsets(kafka_broker: KafkaServer) -> None:
    s = _settings(kafka_broker)
    cap = KafkaCapture(s, ["a", "b"])
    cap.publish([_ev("a", 1, 100, 1, False), _ev("b", 1, 100, 2, True)])
    assert cap.flush(30)
    apply = KafkaApply(s, ["a", "b"])
    sink = _Sink()
    assert len(sink.drain(apply, 2)) == 2
    stored = sink.resume  # what the applier writes with the rows
    assert stored is not None
    batch = apply.receive(10, 0.2)  # nothing more: a boundary that resumes at the same place
    assert not batch.events and batch.resume == stored
    apply.close()
    cap.publish([_ev("b", 2, 200, 1, False), _ev("a", 2, 200, 2, True)])
    assert cap.flush(30)
    cap.close()
    again = KafkaApply(s, ["a", "b"], resume=json.loads(json.dumps(stored)))  # as the target keeps it
    sink = _Sink()
    try:
        got = sink.drain(again, 2)
        time.sleep(0.2)
        got += sink.drain(again, 1, seconds=0.3)
        assert _ids(got) == [("b", 2, 200, 1), ("a", 2, 200, 2)]
    finally:
        again.close()


def test_durable_waits_for_the_broker(kafka_broker: KafkaServer) -> None:
    if not kafka_broker.owned:
        pytest.skip("needs a broker this session started (STRANGLER_KAFKA_BOOTSTRAP is set)")
    s = _settings(kafka_broker)
    cap = KafkaCapture(s, ["a"])
    try:
        cap.publish([_ev("a", 1, 100, 1, True)])
        assert cap.flush(30) and cap.durable() == Position(100, 1)
        kafka_broker.halt()
        try:
            cap.publish([_ev("a", 2, 200, 1, True)])
            time.sleep(1.0)
            assert cap.durable() == Position(100, 1)  # not acknowledged: the slot must not move
        finally:
            kafka_broker.resume()
        assert cap.flush(60)
        assert cap.durable() == Position(200, 1)
    finally:
        cap.close()


def test_dead_letters_carry_the_reason(kafka_broker: KafkaServer) -> None:
    s = _settings(kafka_broker)
    cap = KafkaCapture(s, ["a"])
    cap.publish([_ev("a", 1, 100, 1, True)])
    assert cap.flush(30)
    cap.close()
    # garbage in a table topic: to the DLQ, and the stream goes on
    junk = Producer({"bootstrap.servers": s.bootstrap})
    junk.produce(s.topic("a"), key=b"x", value=b"not json")
    junk.flush(10)
    cap2 = KafkaCapture(s, ["a"])
    cap2.publish([_ev("a", 2, 200, 1, True)])
    assert cap2.flush(30)
    cap2.close()
    apply = KafkaApply(s, ["a"])
    try:
        got = _drain(apply, 2)
        assert [e.key["id"] for e in got] == [1, 2]
        apply.dead_letter(got[0], "target refused: check constraint")
        apply.close()
        dlq = Consumer({"bootstrap.servers": s.bootstrap, "group.id": uuid.uuid4().hex,
                        "auto.offset.reset": "earliest"})
        dlq.subscribe([f"{s.topic('a')}.dlq"])
        seen = []
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            msg = dlq.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append((dict(msg.headers() or []), msg.value()))
        dlq.close()
        reasons = sorted(h["strangler.reason"].decode() for h, _ in seen)
        assert reasons[0] == "target refused: check constraint"
        assert reasons[1].startswith("undecodable message")
        assert any(v == b"not json" for _, v in seen)
    finally:
        apply.close()


def test_a_whole_transaction_whose_events_come_late_is_not_taken_for_a_crashed_one(
        kafka_broker: KafkaServer) -> None:
    """A busy machine: the control topic (BEGIN 1, END 1, then a newer capture process's
    BEGIN) is read before transaction 1's events on the table topic. Its END says it was
    published whole: wait for the events, never skip it as cut short (that lost it)."""
    s = _settings(kafka_broker)
    for key, lsn in ((1, 100), (2, 200)):  # two capture processes, one after the other
        cap = KafkaCapture(s, ["a"])
        cap.publish([_ev("a", key, lsn, 1, True)])
        assert cap.flush(30)
        cap.close()
    apply = KafkaApply(s, ["a"])
    fetch, held, begins, released = apply._fetch, [], set(), [False]  # type: ignore[var-annotated]

    def table_topic_late(timeout: float) -> int:
        got = fetch(timeout)
        if released[0]:
            for key, msg in held:
                apply._queues.setdefault(key, deque()).appendleft(msg)
            held.clear()
            return got
        begins.update(m.tx for m in apply._queues.get((s.control_topic, 0), ()) if m.status == "BEGIN")
        for key, queue in apply._queues.items():
            if key[0] != s.control_topic:
                held.extend((key, m) for m in reversed(queue))
                queue.clear()
        released[0] = len(begins) >= 2  # the next fetch hands the events over, late
        return got

    apply._fetch = table_topic_late  # type: ignore[method-assign]
    try:
        got = _drain(apply, 2)
        assert released[0] and [e.key["id"] for e in got] == [1, 2]
    finally:
        apply.close()


def test_a_topic_deleted_underneath_is_an_error_with_the_repair_not_a_silent_gap(kafka_broker: KafkaServer) -> None:
    from confluent_kafka.admin import AdminClient

    from cdc.errors import CDCError

    s = _settings(kafka_broker)
    cap = KafkaCapture(s, ["a"])
    cap.publish([_ev("a", 1, 100, 1, True), _ev("a", 2, 200, 1, True), _ev("a", 3, 300, 1, True)])
    assert cap.flush(30)
    cap.close()
    apply = KafkaApply(s, ["a"])
    sink = _Sink()
    assert len(sink.drain(apply, 3)) == 3
    apply.close()
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    admin.delete_topics([s.topic("a")], operation_timeout=30)[s.topic("a")].result(60)
    deadline = time.monotonic() + 60
    while True:  # recreated (by a capture's start), with less in it than the target applied
        try:
            again = KafkaCapture(s, ["a"])
            break
        except CDCError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    again.publish([_ev("a", 4, 400, 1, True)])
    assert again.flush(30)
    again.close()
    with pytest.raises(CDCError, match=r"lost messages.*verify .* --repair"):
        KafkaApply(s, ["a"], resume=sink.resume)


def test_a_delete_is_followed_by_a_tombstone_and_a_truncate_has_no_key(kafka_broker: KafkaServer) -> None:
    s = _settings(kafka_broker)
    cap = KafkaCapture(s, ["a"])
    truncate = ChangeEvent(op="t", table="a", key={"id": None}, before=None, after=None,
                           position=Position(300, 1), last=True, schema="public", tx_id=300, ts_ms=1)
    cap.publish([_ev("a", 1, 100, 1, True), _ev("a", 1, 200, 1, False, op="d"), _ev("a", 2, 200, 2, True),
                 truncate])
    assert cap.flush(30)
    cap.close()
    raw = Consumer({"bootstrap.servers": s.bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    raw.subscribe([s.topic("a")])
    msgs: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 30
    while len(msgs) < 5 and time.monotonic() < deadline:
        msg = raw.poll(0.2)
        if msg is not None and msg.error() is None:
            msgs.append((msg.key(), msg.value()))
    raw.close()
    assert [(k, None if v is None else json.loads(v)["op"]) for k, v in msgs] == [
        (b'{"id":1}', "c"), (b'{"id":1}', "d"), (b'{"id":1}', None), (b'{"id":2}', "c"), (None, "t")]
    apply = KafkaApply(s, ["a"])  # reads past the tombstone
    try:
        assert [(e.op, e.key) for e in _drain(apply, 4)] == [("c", {"id": 1}), ("d", {"id": 1}),
                                                            ("c", {"id": 2}), ("t", {})]
    finally:
        apply.close()


@pytest.mark.parametrize("transport, path", [
    ({"kind": "kafka", "replication_factor": 2, "min_insync_replicas": 3}, "min_insync_replicas"),
    ({"kind": "kafka", "compression": "brotli"}, "compression"),
    ({"kind": "kafka", "topic_config": {"cleanup.policy": "compact"}}, r"topic_config\.cleanup\.policy"),
    ({"kind": "kafka", "lease_seconds": 0}, "lease_seconds"),
    ({"kind": "kafka", "tombstones_on_delete": "yes"}, "tombstones_on_delete"),
])
def test_topic_settings_that_make_no_sense_are_refused_by_key(transport, path) -> None:
    cfg = SimpleNamespace(name="catalog", source_kind="postgres", transport=transport)
    with pytest.raises(ConfigError, match=rf"streams\.catalog\.transport\.{path}"):
        KafkaSettings.from_stream(cfg)


def test_topics_are_checked_against_the_broker_with_the_fix(kafka_broker: KafkaServer) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from cdc.transport.kafka import KafkaTransportError, ensure_topics

    brokers = len(AdminClient({"bootstrap.servers": kafka_broker.bootstrap}).list_topics(timeout=30).brokers)
    too_many = _settings(kafka_broker, replication_factor=brokers + 1)
    with pytest.raises(KafkaTransportError, match=rf"replication_factor is {brokers + 1}.*set replication_factor: {brokers}"):
        ensure_topics(too_many, ["a"])
    s = _settings(kafka_broker)
    admin = AdminClient({"bootstrap.servers": s.bootstrap})
    admin.create_topics([NewTopic(s.topic("a"), num_partitions=2, replication_factor=1)])[s.topic("a")].result(30)
    with pytest.raises(KafkaTransportError, match="has 2 partitions.*exactly one"):
        ensure_topics(s, ["a"])
    fresh = _settings(kafka_broker, compression="zstd")
    ensure_topics(fresh, ["a"])  # created with the stream's settings, and accepted as they are
    from confluent_kafka.admin import ConfigResource

    res = ConfigResource(ConfigResource.Type.TOPIC, fresh.topic("a"))
    got = admin.describe_configs([res])[res].result(30)
    assert got["compression.type"].value == "zstd" and got["min.insync.replicas"].value == "1"


def test_a_new_capture_point_resets_the_apply_end_in_its_place(kafka_broker: KafkaServer) -> None:
    """`start_over` (a new slot): the apply end gets `batch.reset` exactly there, and positions
    from before it no longer drop anything (a restored server's LSNs start lower); the
    capture's own progress starts afresh and is found again by the next capture process."""
    s = _settings(kafka_broker)
    cap = KafkaCapture(s, ["t"])
    apply = KafkaApply(s, ["t"])
    try:
        assert cap.progress() == Progress()  # a new stream's; kept from now on
        cap.publish([_ev("t", 1, 500, 1, True)])
        assert cap.flush(30) and cap.progress().position == Position(500, 1)
        cap.start_over()
        assert cap.progress() == Progress()
        cap.publish([_ev("t", 2, 100, 1, True)])
        assert cap.flush(30)
        got: list[ChangeEvent] = []
        resets: list[int] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            batch = apply.receive(1000, 0.2)
            if batch.reset:
                resets.append(len(got))
            got += batch.events
        assert _ids(got) == [("t", 1, 500, 1), ("t", 2, 100, 1)] and resets == [1]
    finally:
        cap.close()
        apply.close()
    assert kafka_progress.load(s).position == Position(100, 1)


def test_a_topic_deleted_while_it_is_checked_is_a_transport_error_with_what_to_do() -> None:
    """A capture starting while a topic is being deleted: the metadata lists it, its settings
    are gone a moment later. That is the stream's error, naming the repair (a start retries
    it), not librdkafka's raw exception."""
    from concurrent.futures import Future

    from confluent_kafka import KafkaError, KafkaException

    from cdc.transport.kafka_topics import KafkaTransportError, _check_existing

    gone: Future[Any] = Future()
    gone.set_exception(KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))

    class Admin:
        def describe_configs(self, resources: list[Any], request_timeout: float) -> dict[Any, Any]:
            return {resources[0]: gone}

    meta = SimpleNamespace(topics={"t": SimpleNamespace(partitions={0: SimpleNamespace(replicas=[1])})})
    with pytest.raises(KafkaTransportError, match=r"vanished while it was checked.*--repair"):
        _check_existing(Admin(), meta, ["t"], 1, 1, "transport")
