"""The topic catalogue, loaded from the contracts file that ships beside the code."""

from __future__ import annotations

import functools
from importlib import resources

import msgspec

from herald.domain.models import Category


class TopicContract(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    description: str
    partitions: int
    retention_hours: int
    schema: str
    producers: list[str]
    consumers: list[str]
    example: str


class _Contracts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    topics: list[TopicContract]


EVENTS = "herald.events"
DLQ = "herald.dlq"
RETRY = "herald.retry"
WORKER_GROUP = "herald-workers"
STATUS_SINK_GROUP = "herald-sinks-status"
CALLBACK_SINK_GROUP = "herald-sinks-callbacks"
BILLING_SINK_GROUP = "herald-sinks-billing"


def class_topic(category: Category) -> str:
    return f"herald.messages.{category.value}"


MESSAGE_TOPICS: tuple[str, ...] = tuple(class_topic(c) for c in Category)


@functools.cache
def contracts() -> tuple[TopicContract, ...]:
    raw = resources.files("herald.contracts").joinpath("topics.toml").read_bytes()
    return tuple(msgspec.toml.decode(raw, type=_Contracts).topics)


class Names(msgspec.Struct, frozen=True):
    """Topic and group names with the deployment's prefix applied (tests use a prefix each)."""

    prefix: str = ""

    def topic(self, name: str) -> str:
        return self.prefix + name

    def group(self, name: str) -> str:
        return self.prefix + name

    def unprefixed(self, topic: str) -> str:
        return topic.removeprefix(self.prefix)
