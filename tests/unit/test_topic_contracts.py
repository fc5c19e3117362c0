"""Topic contracts are data; these tests catch drift between them, the code and the schemas."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.records import EVENT_DECODER, DeadLetterV2, SealedMessageV2, StatusEventV1
from herald.kafka.topics import (
    BILLING_SINK_GROUP,
    CALLBACK_SINK_GROUP,
    DLQ,
    EVENTS,
    MESSAGE_TOPICS,
    RETRY,
    STATUS_SINK_GROUP,
    WORKER_GROUP,
    contracts,
)
from herald.sealing import open_with

SCHEMAS: dict[str, type[msgspec.Struct]] = {
    "herald.message.v2": SealedMessageV2,
    "herald.status.v1": StatusEventV1,
    "herald.deadletter.v2": DeadLetterV2,
}
EXAMPLE_KEY = AESGCM(bytes(32))
ROOT = Path(__file__).resolve().parents[2]


def test_every_example_decodes_with_its_schema() -> None:
    for contract in contracts():
        schema = SCHEMAS[contract.schema]
        decoded = msgspec.json.decode(contract.example, type=schema)
        assert msgspec.json.decode(msgspec.json.encode(decoded), type=schema) == decoded
        # Examples use only fields the schema has (no silently ignored keys).
        assert set(msgspec.json.decode(contract.example)) <= {*schema.__struct_fields__, "schema"}


def test_message_examples_carry_content_sealed_only() -> None:
    """No recipient or body in clear on any message topic, yet the content is all there."""
    for contract in contracts():
        decoded = msgspec.json.decode(contract.example, type=SCHEMAS[contract.schema])
        sealed = decoded.message if isinstance(decoded, DeadLetterV2) else decoded
        if not isinstance(sealed, SealedMessageV2):
            continue
        assert not {"to", "body"} & set(msgspec.json.decode(contract.example)), contract.name
        opened = open_with(EXAMPLE_KEY, sealed)
        assert opened.id == sealed.id
        assert opened.to not in contract.example
        assert opened.body not in contract.example


def test_code_topics_and_contracts_agree() -> None:
    assert {c.name for c in contracts()} == {*MESSAGE_TOPICS, EVENTS, RETRY, DLQ}


def test_consumer_groups_in_contracts_are_the_code_groups() -> None:
    groups = {g for c in contracts() for g in c.consumers}
    assert groups == {WORKER_GROUP, STATUS_SINK_GROUP, BILLING_SINK_GROUP, CALLBACK_SINK_GROUP}


def test_no_topic_literal_in_code_is_missing_from_contracts() -> None:
    known = {c.name for c in contracts()}
    pattern = re.compile(r"[\"'](herald\.(?:messages\.\w+|events|retry|dlq))[\"']")
    for path in [*ROOT.glob("libs/**/*.py"), *ROOT.glob("services/**/*.py")]:
        for name in pattern.findall(path.read_text()):
            assert name in known, f"{path}: topic {name} has no contract"


def test_a_status_event_whose_time_no_timestamp_holds_does_not_decode() -> None:
    # The sinks skip records that do not decode; one that decoded would stop every sink that
    # converts its time ("year 3170843 is out of range") and be read again after each restart.
    event = msgspec.json.decode(next(t.example for t in contracts() if t.name == EVENTS))
    for at_ms in (10**17, -1):
        with pytest.raises(msgspec.ValidationError, match="at_ms"):
            EVENT_DECODER.decode(msgspec.json.encode({**event, "at_ms": at_ms}))
    assert EVENT_DECODER.decode(msgspec.json.encode(event)).at_ms == event["at_ms"]


def test_the_workers_topics_share_one_partition_count() -> None:
    # The workers' range assignor co-locates a recipient's partition of every class topic and of
    # herald.retry in one worker only while all four have the same count (herald.kafka.consumer).
    counts = {c.name: c.partitions for c in contracts() if c.name in (*MESSAGE_TOPICS, RETRY)}
    assert len(counts) == 4
    assert len(set(counts.values())) == 1, counts
