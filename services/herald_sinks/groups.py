"""The sinks' consumer groups: what each reads and the handler that applies it."""

from __future__ import annotations

import asyncpg

from herald.kafka.consumer import Handler
from herald.kafka.topics import (
    BILLING_SINK_GROUP,
    CALLBACK_SINK_GROUP,
    EVENTS,
    MESSAGE_TOPICS,
    STATUS_SINK_GROUP,
    Names,
)
from herald_sinks.billing import BillingLedger
from herald_sinks.callbacks import CallbackConfigs, CallbackRecorder
from herald_sinks.settings import SinksConfig
from herald_sinks.status import SendsRecorded, StatusProjection
from herald_sinks.tenant_board import TenantBoard

TOPICS: dict[str, tuple[str, ...]] = {
    STATUS_SINK_GROUP: (*MESSAGE_TOPICS, EVENTS),
    BILLING_SINK_GROUP: (EVENTS,),
    CALLBACK_SINK_GROUP: (EVENTS,),
}
"""Three groups, so a slow callback table or billing never delays status."""
SINK_GROUPS = tuple(TOPICS)


def handlers(
    pool: asyncpg.Pool,
    settings: SinksConfig,
    configs: CallbackConfigs | None = None,
    sends_recorded: SendsRecorded | None = None,
    board: TenantBoard | None = None,
) -> dict[str, Handler]:
    """`configs` is shared with the callback dispatcher when the sinks run; a new one otherwise.
    `sends_recorded` (the receipt binder's) hears of every send the status projection records;
    `board` of every final status it applies."""
    names = Names(settings.kafka.topic_prefix)
    return {
        STATUS_SINK_GROUP: StatusProjection(pool, names, sends_recorded, board),
        BILLING_SINK_GROUP: BillingLedger(pool),
        CALLBACK_SINK_GROUP: CallbackRecorder(pool, configs or CallbackConfigs(pool)),
    }
