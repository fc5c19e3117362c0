"""Topic contracts are data; these tests catch drift between them, the code and the schemas."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from herald.domain.records import DeadLetterV1, OutboundMessageV1, StatusEventV1
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

SCHEMAS: dict[str, type[msgspec.Struct]] = {
    "herald.message.v1": OutboundMessageV1,
    "herald.status.v1": StatusEventV1,
    "herald.deadletter.v1": DeadLetterV1,
}
ROOT = Path(__file__).resolve().parents[2]


def test_every_example_decodes_with_its_schema() -> None:
    for contract in contracts():
        schema = SCHEMAS[contract.schema]
        decoded = msgspec.json.decode(contract.example, type=schema)
        assert msgspec.json.decode(msgspec.json.encode(decoded), type=schema) == decoded
        # Examples use only fields the schema has (no silently ignored keys).
        assert set(msgspec.json.decode(contract.example)) <= {*schema.__struct_fields__, "schema"}


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
