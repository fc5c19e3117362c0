"""The accept pipeline: validate, render, produce, and only then answer 202.

`Sender.prepare` is pure validation and rendering against cached templates (no database round
trip on a warm cache); `Sender.accept` produces with acks=all and returns the id only after the
broker acknowledged. If the broker does not acknowledge, the client gets 503 and may retry.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
from aiokafka.errors import KafkaError

from herald import metrics
from herald.db import templates
from herald.db.templates import TemplateRow
from herald.domain import recipients
from herald.domain.models import DEFAULT_TTL_SECONDS, Category, TemplateStatus
from herald.domain.records import ENCODER, OutboundMessageV1, message_key
from herald.domain.templates import render
from herald.errors import Forbidden, InvalidRequest, NotFound, Unavailable
from herald.ids import uuid7
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import class_topic
from herald_api.auth import Principal
from herald_api.caches import TTLCache
from herald_api.schemas import MessageCreate

TemplateKey = tuple[uuid.UUID, str, str]


class TemplateCache:
    def __init__(self, pool: asyncpg.Pool, ttl: float) -> None:
        self._pool = pool
        self._cache: TTLCache[TemplateKey, TemplateRow | None] = TTLCache(ttl)

    async def get(self, tenant_id: uuid.UUID, name: str, language: str) -> TemplateRow | None:
        return await self._cache.get(
            (tenant_id, name, language), lambda: templates.latest(self._pool, tenant_id, name, language)
        )

    def invalidate(self, tenant_id: uuid.UUID, name: str, language: str) -> None:
        self._cache.invalidate((tenant_id, name, language))


class Sender:
    def __init__(self, producer: Producer, template_cache: TemplateCache) -> None:
        self._producer = producer
        self._templates = template_cache

    async def prepare(self, principal: Principal, request: MessageCreate, now_ms: int) -> OutboundMessageV1:
        tenant = principal.tenant
        template = await self._templates.get(tenant.id, request.template.name, request.template.language)
        if template is None:
            raise NotFound(
                f"no template {request.template.name!r} in language {request.template.language!r}",
                code="template_not_found",
            )
        if template.status is not TemplateStatus.APPROVED:
            raise InvalidRequest.field("template", f"the template is {template.status}", code="template_not_approved")
        if template.channel is not request.channel:
            raise InvalidRequest.field(
                "channel", f"the template is for {template.channel}, not {request.channel}", code="channel_mismatch"
            )
        if template.category is Category.MARKETING and not tenant.verified:
            raise Forbidden("unverified tenants cannot send marketing messages", code="verification_required")
        recipient = recipients.normalize(request.channel, request.to)
        body = render(template.body, request.params, template.channel)
        ttl = request.ttl_seconds or DEFAULT_TTL_SECONDS[template.category]
        return OutboundMessageV1(
            id=uuid7(now_ms),
            tenant_id=tenant.id,
            key_kind=principal.key_kind,
            channel=template.channel,
            category=template.category,
            template_name=template.name,
            template_language=template.language,
            template_version=template.version,
            to=recipient.address,
            country=recipient.country,
            body=body,
            created_at_ms=now_ms,
            expires_at_ms=now_ms + ttl * 1000,
            verified_sender=tenant.verified,
            reference=request.reference,
        )

    async def accept(self, principal: Principal, request: MessageCreate) -> uuid.UUID:
        message = await self.prepare(principal, request, time.time_ns() // 1_000_000)
        await self.produce([message])
        return message.id

    async def produce(self, messages: list[OutboundMessageV1]) -> None:
        records = [
            Record(topic=class_topic(m.category), key=message_key(m.tenant_id, m.to), value=ENCODER.encode(m))
            for m in messages
        ]
        try:
            await self._producer.send_many(records)
        except KafkaError as exc:
            raise Unavailable(
                "the message queue did not acknowledge; retry", code="broker_unavailable", retry_after=1
            ) from exc
        for m in messages:
            metrics.MESSAGES_ACCEPTED.labels(m.category.value, m.channel.value).inc()
