import base64
import json
import shutil
import uuid

import psycopg2
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from devstack import DebeziumConnector, KafkaServer, ServiceUnavailable
from devstack import debezium as dbz_module
from devstack.kafka import ENV_CACHE


def _consume(bootstrap: str, topic: str, expected: int) -> list[tuple[dict, dict | None]]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])  # one partition: no group join
    got: list[tuple[dict, dict | None]] = []
    try:
        for _ in range(300):
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                value = msg.value()
                got.append((json.loads(msg.key()), None if value is None else json.loads(value)))
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


@pytest.mark.postgres
@pytest.mark.kafka
@pytest.mark.slow
def test_debeziums_messages_reach_kafka_in_its_own_shapes(
    debezium_runtime: tuple[str, str], pg_dsn: str, kafka_broker: KafkaServer
) -> None:
    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), data bytea,"
            " at timestamptz, doc jsonb)"
        )
        cur.execute("INSERT INTO items VALUES (1, 'one', 12.34, '\\x0102ff',"
                    " '2024-05-06 07:08:09.123456+00', '{\"a\": [1, 2]}')")
    prefix = f"dbz{uuid.uuid4().hex[:8]}"
    connector = DebeziumConnector(
        dsn=pg_dsn, bootstrap=kafka_broker.bootstrap, topic_prefix=prefix, tables=["public.items"],
    )
    try:
        with connector:  # returns once the snapshot is read and it streams
            with conn.cursor() as cur:
                cur.execute("INSERT INTO items VALUES (2, 'two', 0.5, '\\x00',"
                            " '2024-01-01 00:00:00+02', '{\"b\": null}')")
                cur.execute("UPDATE items SET name = 'TWO' WHERE id = 2")
                cur.execute("DELETE FROM items WHERE id = 1")
            assert connector.wait_acked(5) == 5
            got = _consume(kafka_broker.bootstrap, f"{prefix}.public.items", 5)
    finally:
        connector.drop_slot()
        conn.close()

    keys = [key for key, _ in got]
    assert keys == [{"id": 1}, {"id": 2}, {"id": 2}, {"id": 1}, {"id": 1}]
    ops = [value and value["op"] for _, value in got]
    assert ops == ["r", "c", "u", "d", None]  # the delete's tombstone last: a null value

    snapshot, created, updated, deleted, _ = (value for _, value in got)
    assert snapshot is not None and created is not None and updated is not None and deleted is not None
    for value in (snapshot, created, updated, deleted):
        assert "payload" not in value and "schema" not in value  # schemaless JSON
        assert {"before", "after", "source", "op", "ts_ms"} <= value.keys()
        assert value["source"]["connector"] == "postgresql"
        assert value["source"]["name"] == prefix
        assert (value["source"]["schema"], value["source"]["table"]) == ("public", "items")
    assert snapshot["source"]["snapshot"] in ("true", "last")
    assert created["source"]["snapshot"] == "false"
    assert snapshot["before"] is None
    assert snapshot["after"] == {
        "id": 1, "name": "one",
        "price": base64.b64encode((1234).to_bytes(2, "big")).decode(),  # decimal: unscaled bytes
        "data": base64.b64encode(b"\x01\x02\xff").decode(),
        "at": "2024-05-06T07:08:09.123456Z",
        "doc": '{"a": [1, 2]}',
    }
    assert created["after"]["at"] == "2023-12-31T22:00:00.000000Z"
    assert updated["before"] is None  # REPLICA IDENTITY DEFAULT: no old row
    assert updated["after"]["name"] == "TWO"
    assert deleted["after"] is None and deleted["before"]["id"] == 1
    lsns = [value["source"]["lsn"] for value in (created, updated, deleted)]
    assert lsns == sorted(lsns)


def test_missing_tools_are_named(monkeypatch, tmp_path) -> None:
    real_which = shutil.which
    if real_which("java") is None:
        pytest.skip("no java on this machine: test_kafka's test_missing_java_says_so covers it")

    def which(name: str, *args, **kwargs):
        return None if name == "mvn" else real_which(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))  # nothing fetched or compiled yet
    with pytest.raises(ServiceUnavailable, match="Maven was not found.*apt-get install maven"):
        dbz_module.debezium_runtime()

    jre = tmp_path / "jre" / "bin"  # a Java without javac beside it
    jre.mkdir(parents=True)
    (jre / "java").symlink_to(dbz_module.find_java())
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jre"))
    with pytest.raises(ServiceUnavailable, match="javac was not found.*apt-get install openjdk-17-jdk"):
        dbz_module.debezium_runtime()
