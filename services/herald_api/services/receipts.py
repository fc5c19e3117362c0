"""Provider receipts, once verified: recorded as reported, then bound to their sends."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from aiokafka.errors import KafkaError

from herald import metrics
from herald.db import receipts as receipt_store
from herald.db.pool import DATABASE_ERRORS
from herald.domain.receipts import RECEIPT_STATUSES, Reported
from herald.errors import InvalidRequest
from herald.kafka.producer import Producer
from herald.receipt_binding import bind_and_publish

log = logging.getLogger(__name__)


class Receipts:
    def __init__(self, pool: asyncpg.Pool, producer: Producer) -> None:
        self._pool = pool
        self._producer = producer

    async def record(self, provider: str, reports: Sequence[Reported]) -> None:
        """All or nothing: an invalid receipt refuses the batch (the provider retries it whole).
        Returns once recorded (what 202 promises); binding that fails now is the sinks' to do."""
        for index, report in enumerate(reports):
            if report.status not in RECEIPT_STATUSES:
                field = "status" if len(reports) == 1 else f"receipts[{index}].status"
                raise InvalidRequest.field(field, "must be delivered, read or failed", code="invalid_receipt")
        # A database that does not answer is a 503 (problems.py): the provider retries the receipt.
        await receipt_store.record(self._pool, provider, list(reports))
        metrics.RECEIPTS.labels(metrics.provider_label(provider), "recorded").inc(len(reports))
        try:
            await bind_and_publish(
                self._pool, self._producer, sorted({(provider, r.provider_message_id) for r in reports})
            )
        except (*DATABASE_ERRORS, KafkaError) as exc:
            log.warning("receipt binding deferred to the sinks", extra={"error": type(exc).__name__})
