"""What SMS providers report back to a worker: SMPP receipts and replies, and opt-outs.

Receipts are recorded as reported (`herald.db.receipts`) and bound to their sends
(`herald.receipt_binding`) in batches: an SMSC sends them as fast as it delivers, and one round
trip each would not keep up. A batch that cannot be recorded is kept and tried again; one whose
binding fails is left to the sinks' sweep, like any provider's. `smpp34` acknowledges a
`deliver_sm` before it reaches here, so a worker that dies holding unrecorded receipts loses
them: their messages end by the receipt deadline (`failed`, `receipt_timeout`) instead.

A reply whose one word is a stop word (`smpp_receipts.is_stop`) suppresses its sender for the
tenant that owns the number it was sent to (`Tenant.sms_sender`), on sms; a provider's refusal
because the recipient opted out with it does the same (`opted_out`). A STOP to a shared sender
names no tenant: it is counted (`unattributed`) and recorded nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import asyncpg
import smpp34
from aiokafka.errors import KafkaError

from herald import metrics
from herald.db import receipts as receipt_store
from herald.db import sms_config
from herald.db import suppressions as suppression_store
from herald.db.pool import DATABASE_ERRORS
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.receipts import Reported
from herald.domain.suppressions import SuppressionReason
from herald.kafka.producer import Producer
from herald.receipt_binding import bind_and_publish
from herald_worker.sms.smpp_receipts import is_receipt, is_stop, parse_receipt

log = logging.getLogger(__name__)
BATCH = 500
FLUSH_SECONDS = 0.02


class Inbound:
    def __init__(self, pool: asyncpg.Pool, producer: Producer, hasher: RecipientHasher) -> None:
        self._pool = pool
        self._producer = producer
        self._hasher = hasher
        sources = ("unattributed", SuppressionReason.STOP_REPLY, SuppressionReason.PROVIDER_OPT_OUT)
        metrics.every_series(metrics.SMS_OPT_OUTS, sources)
        self._queue: asyncio.Queue[tuple[str, Reported]] = asyncio.Queue()
        self._flusher = asyncio.create_task(self._flush_forever(), name="sms-receipts")

    async def deliver(self, provider: str, event: smpp34.DeliverSmEvent) -> None:
        """`SmppProvider`'s `on_deliver`."""
        if is_receipt(event.esm_class):
            receipt = parse_receipt(event.short_message, {t.tag: t.value for t in event.tlvs})
            if receipt is None:
                metrics.RECEIPTS.labels(metrics.provider_label(provider), "unreadable").inc()
                return
            # No code of Herald's: binding gives a failure `undeliverable`, the SMSC's words beside it.
            report = Reported(receipt.provider_message_id, receipt.status, receipt.at_ms,
                              provider_error=receipt.error)  # fmt: skip
            self._queue.put_nowait((provider, report))
            return
        text = event.short_message.decode("utf-16-be" if event.data_coding == 8 else "latin-1", errors="replace")
        if is_stop(text):
            await self.opted_out_by_reply(event.destination_addr, "+" + event.source_addr.lstrip("+"))

    async def opted_out_by_reply(self, sender: str, recipient: str) -> None:
        tenant_id = await sms_config.tenant_of_sender(self._pool, sender)
        if tenant_id is None:
            metrics.SMS_OPT_OUTS.labels("unattributed").inc()
            return
        await self.suppress(tenant_id, recipient, SuppressionReason.STOP_REPLY)

    async def suppress(self, tenant_id: uuid.UUID, recipient: str, reason: SuppressionReason) -> None:
        candidate = suppression_store.candidate(self._hasher, tenant_id, Channel.SMS, recipient)
        try:
            await suppression_store.add(self._pool, tenant_id, [candidate], reason)
        except DATABASE_ERRORS as exc:
            log.warning("an opt-out could not be recorded", extra={"error": type(exc).__name__})
            return
        metrics.SMS_OPT_OUTS.labels(reason.value).inc()

    async def _flush_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(FLUSH_SECONDS)  # gather what arrives meanwhile
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._record(batch)

    async def _record(self, batch: list[tuple[str, Reported]]) -> None:
        by_provider: dict[str, list[Reported]] = {}
        for provider, report in batch:
            by_provider.setdefault(provider, []).append(report)
        delay = 0.1
        for provider, reports in by_provider.items():
            while True:
                try:
                    await receipt_store.record(self._pool, provider, reports)
                    break
                except DATABASE_ERRORS as exc:
                    log.warning("smpp receipts not recorded yet; retrying", extra={"error": type(exc).__name__})
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)
            metrics.RECEIPTS.labels(metrics.provider_label(provider), "recorded").inc(len(reports))
            with contextlib.suppress(*DATABASE_ERRORS, KafkaError):  # the sinks' sweep binds them
                await bind_and_publish(self._pool, self._producer,
                                       sorted({(provider, r.provider_message_id) for r in reports}))  # fmt: skip

    async def close(self) -> None:
        self._flusher.cancel()
        with contextlib.suppress(BaseException):
            await self._flusher
        pending = []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        if pending:
            with contextlib.suppress(*DATABASE_ERRORS):
                await asyncio.wait_for(self._record(pending), 5)
