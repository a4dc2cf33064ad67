"""Topic names and partitions as other publishers see them: the prefix joins the catalog's
names with a separator, and a key goes to the partition Java's default partitioner picks."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from pydantic import ValidationError

from interaction_store.catalog import StreamCatalog, partition_of
from interaction_store.codec import decode_document
from interaction_store.log import open_log
from interaction_store.settings import Settings
from tests.factories import doc

# Utils.murmur2 of Apache Kafka's Java client (its UtilsTest vectors, then contact-id-like
# keys computed with kafka-clients 4.3.1), and Utils.toPositive(hash) % 6 for a 6-partition
# topic like `interactions`.
JAVA_MURMUR2 = [
    ("21", -973932308, 0),
    ("foobar", -790332482, 0),
    ("abc", 479470107, 3),
    ("cookie-77", -242307677, 3),
    ("\u00e9t\u00e9", -2101193575, 1),
    ("8d723104-5f1a-4c3e-9b59-2a1f0e6c7d11", -1129770155, 3),
    ("0f3a9c2e-1b4d-4e8f-a6c7-3d2e1f0a9b8c", 2012129544, 0),
    ("5bdb9572-f556-5691-905f-4c1ad7c5c95d", -1106696145, 5),
    ("662fcce6-3097-5222-96f8-13c1a952fe4d", 1153457335, 1),
    ("e5a6744c-067f-5f10-aeef-ed2ce98ffd2d", 697089796, 4),
    ("12b6b29c-3f3c-5c79-a401-375c0b3f7a21", -1277116406, 0),
]


@pytest.mark.parametrize(("key", "java_hash", "partition_of_6"), JAVA_MURMUR2)
def test_key_to_partition_is_javas_default_murmur2(
    key: str, java_hash: int, partition_of_6: int
) -> None:
    assert partition_of(key.encode(), 6) == partition_of_6
    for count in (1, 3, 12, 100):
        assert partition_of(key.encode(), count) == (java_hash & 0x7FFFFFFF) % count


def names(**settings: str) -> set[str]:
    catalog = StreamCatalog.load(Settings.model_validate(settings))
    return {t.name for t in catalog.topics.values()}


def test_a_prefix_is_joined_to_topic_names_with_a_separator() -> None:
    assert "acme.istore.interactions.v1" in names(topic_prefix="acme")
    assert "acme-istore.interactions.v1" in names(topic_prefix="acme", topic_separator="-")
    # Prefixes that end in a separator already (as deployments wrote them) keep their names.
    for prefix in ("acme.", "acme_", "acme-"):
        assert f"{prefix}istore.interactions.v1" in names(topic_prefix=prefix)
    # A deployment that set a bare prefix before the separator existed keeps its topics.
    assert "acmeistore.interactions.v1" in names(topic_prefix="acme", topic_separator="")
    assert "istore.interactions.v1" in names()


@pytest.mark.parametrize("field", ["topic_prefix", "topic_separator"])
def test_a_prefix_kafka_cannot_name_a_topic_with_is_refused(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate({field: "acme/eu"})
    assert field in str(info.value) and "acme/eu" in str(info.value)


@pytest.mark.kafka
def test_on_kafka_topics_get_the_separator_and_keys_javas_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        backend="kafka",
        data_dir=tmp_path / "data",
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
    )
    contacts = [key for key, _, _ in JAVA_MURMUR2 if len(key) == 36]
    with open_log(settings) as log:
        log.ensure_topics()
        appended = log.publish(
            [decode_document(doc(contact=contact, at=i)) for i, contact in enumerate(contacts)]
        )
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        on_broker = set(admin.list_topics())
    finally:
        admin.close()
    assert f"{prefix}.istore.interactions.v1" in on_broker
    assert f"{prefix}istore.interactions.v1" not in on_broker
    expected = {key: p for key, _, p in JAVA_MURMUR2}
    assert [a.position.partition for a in appended] == [expected[c] for c in contacts]
    assert {a.position.topic for a in appended} == {f"{prefix}.istore.interactions.v1"}
