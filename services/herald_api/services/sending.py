"""The accept pipeline: validate, render, reserve recipients, produce, and only then answer.

`Sender.prepare` is validation and rendering against cached templates (no database round trip
on a warm cache). `Sender.accept_many` admits the prepared messages against the tenant's rolling
24 h recipient limit (only for limited tenants, in a transaction committed before anything is
produced) and produces them in one round: every record is enqueued, then the broker's
acks are awaited once. If the broker does not acknowledge, nothing is reported accepted (503).
"""

from __future__ import annotations

import collections
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec
from aiokafka.errors import KafkaError

from herald import clock, metrics
from herald.caches import TTLCache
from herald.db import recipients as recipient_store
from herald.db import suppressions as suppression_store
from herald.db import templates
from herald.db.content_keys import ContentKeys
from herald.db.suppressions import Candidate
from herald.domain import email as email_content
from herald.domain import recipients
from herald.domain.email import Identity
from herald.domain.limits import RecipientHasher
from herald.domain.models import DEFAULT_TTL_SECONDS, Category, Channel, KeyKind, TemplateStatus
from herald.domain.records import ENCODER, OutboundMessage, SealedMessageV2, message_key
from herald.domain.segments import count as count_segments
from herald.domain.sends import SendRequest
from herald.domain.suppressions import SUPPRESSED_CATEGORIES
from herald.domain.templates import EmailParts, Template, render
from herald.domain.tenants import Tenant
from herald.errors import FieldError, Forbidden, HeraldError, InvalidRequest, NotFound, RateLimited, Unavailable
from herald.ids import idempotent_id, uuid7
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import class_topic
from herald.whatsapp.templates import encode_values

TemplateKey = tuple[uuid.UUID, str, str]
MAX_SMS_SEGMENTS = 10
"""The longest SMS Herald accepts, in segments (1,530 GSM-7 or 670 UCS-2 characters): Twilio
refuses past 10 segments too, and a handset reassembles beyond it unreliably."""


class Admitted(msgspec.Struct, frozen=True):
    """An accepted message: what the send's answer tells."""

    id: uuid.UUID
    segments: int
    scheduled: bool = False


Outcome = Admitted | HeraldError


class TemplateCache:
    def __init__(self, pool: asyncpg.Pool, ttl: float) -> None:
        self.ttl = ttl
        self._pool = pool
        self._cache: TTLCache[TemplateKey, Template | None] = TTLCache(ttl)

    async def get(self, tenant_id: uuid.UUID, name: str, language: str) -> Template | None:
        return await self._cache.get(
            (tenant_id, name, language), lambda: templates.latest(self._pool, tenant_id, name, language)
        )

    def invalidate(self, tenant_id: uuid.UUID, name: str, language: str) -> None:
        self._cache.invalidate((tenant_id, name, language))


class Sender:
    def __init__(
        self,
        producer: Producer,
        template_cache: TemplateCache,
        pool: asyncpg.Pool,
        content_keys: ContentKeys,
        hasher: RecipientHasher,
        whatsapp_connected: Callable[[uuid.UUID], Awaitable[bool]],
        email_identity: Callable[[uuid.UUID, str | None], Awaitable[Identity | None]],
    ) -> None:
        """`whatsapp_connected(tenant)`: whether the tenant has a WhatsApp account connected;
        `email_identity(tenant, from_address)`: the verified identity an email goes from."""
        self._email_identity = email_identity
        self._hasher = hasher
        self._producer = producer
        self._templates = template_cache
        self._pool = pool
        self._content_keys = content_keys
        self._whatsapp_connected = whatsapp_connected

    async def template(self, tenant_id: uuid.UUID, name: str, language: str) -> Template | None:
        return await self._templates.get(tenant_id, name, language)

    async def prepare(self, tenant: Tenant, key_kind: KeyKind, request: SendRequest, now_ms: int) -> OutboundMessage:
        make = await self.preparer(tenant, key_kind, request.channel, request.template_name, request.template_language)
        return make(request, now_ms)

    async def preparer(
        self, tenant: Tenant, key_kind: KeyKind, channel: Channel, template_name: str, language: str
    ) -> Callable[[SendRequest, int], OutboundMessage]:
        """What makes messages of this template for the tenant: `make(request, now_ms)`, which
        checks and renders one request (raising HeraldError). Raises HeraldError at once for
        what refuses every request alike (no such template, not approved, no account)."""
        template = await self._templates.get(tenant.id, template_name, language)
        if template is None:
            raise NotFound(
                f"no template {template_name!r} in language {language!r}",
                code="template_not_found",
                fields=(FieldError("template", "no such template"),),
            )
        if template.status is not TemplateStatus.APPROVED:
            raise InvalidRequest.field("template", f"the template is {template.status}", code="template_not_approved")
        if template.channel is not channel:
            raise InvalidRequest.field(
                "channel", f"the template is for {template.channel}, not {channel}", code="channel_mismatch"
            )
        if template.category is Category.MARKETING and not tenant.verified:
            raise Forbidden("unverified tenants cannot send marketing messages", code="verification_required")
        if template.channel is Channel.WHATSAPP and not await self._whatsapp_connected(tenant.id):
            raise InvalidRequest.field(
                "channel", "no WhatsApp Business Account is connected (PUT /v1/whatsapp/account)",
                code="whatsapp_not_connected",
            )  # fmt: skip
        sender = tenant.sms_sender if template.channel is Channel.SMS else None
        email: EmailParts | None = None
        if template.channel is Channel.EMAIL:
            email, sender = await self._email(tenant, template)

        def make(request: SendRequest, now_ms: int) -> OutboundMessage:
            recipient = recipients.normalize(request.channel, request.to)
            segments = 1
            if email is not None:
                body = email_content.encode(email_content.render(template.body, email, request.params))
            elif template.channel is Channel.WHATSAPP:
                # Meta renders a whatsapp template: what travels (sealed) is its parameters, in order.
                render(template.body, request.params, template.channel)
                body = encode_values(template.body, request.params)
            else:
                body = render(template.body, request.params, template.channel)
            if template.channel is Channel.SMS and (segments := count_segments(body)) > MAX_SMS_SEGMENTS:
                raise InvalidRequest.field(
                    "params", f"the rendered text takes {segments} SMS segments; at most {MAX_SMS_SEGMENTS} are sent",
                    code="message_too_long",
                )  # fmt: skip
            ttl = request.ttl_seconds or DEFAULT_TTL_SECONDS[template.category]
            not_before = request.not_before_ms(now_ms)
            key = request.idempotency_key
            return OutboundMessage(
                id=uuid7(now_ms) if key is None else idempotent_id(tenant.id, key),
                tenant_id=tenant.id,
                key_kind=key_kind,
                channel=template.channel,
                category=template.category,
                template_name=template.name,
                template_language=template.language,
                template_version=template.version,
                to=recipient.address,
                country=recipient.country,
                body=body,
                created_at_ms=now_ms,
                expires_at_ms=max(now_ms, not_before) + ttl * 1000,
                not_before_ms=not_before,
                verified_sender=tenant.verified,
                reference=request.reference,
                idempotent=key is not None,
                tier=tenant.tier,
                segments=segments,
                sender=sender,
                campaign_id=request.campaign_id,
            )

        return make

    async def _email(self, tenant: Tenant, template: Template) -> tuple[EmailParts, str]:
        """The template's mail parts and the verified address it goes from."""
        if template.email is None:  # created before email templates had parts; a new version has them
            raise InvalidRequest.field("template", "the email template has no subject; create a new version",
                                       code="template_invalid")  # fmt: skip
        identity = await self._email_identity(tenant.id, template.email.from_address)
        if identity is None:
            raise InvalidRequest.field(
                "template", "no verified email identity to send from (PUT /v1/email/identities, then verify)",
                code="email_identity_unverified",
            )  # fmt: skip
        return template.email, identity.from_address

    async def accept(self, tenant: Tenant, key_kind: KeyKind, request: SendRequest) -> Admitted:
        message = await self.prepare(tenant, key_kind, request, clock.now_ms())
        (outcome,) = await self.accept_many(tenant, [message])
        if isinstance(outcome, HeraldError):
            raise outcome
        return outcome

    async def accept_batch(
        self, tenant: Tenant, key_kind: KeyKind, items: Sequence[SendRequest | HeraldError]
    ) -> list[Outcome]:
        """One outcome per item, in order: an item that is already an error (it did not
        validate) stays that error."""
        now_ms = clock.now_ms()
        outcomes: list[Outcome | OutboundMessage] = []
        for item in items:
            if isinstance(item, HeraldError):
                outcomes.append(item)
                continue
            try:
                outcomes.append(await self.prepare(tenant, key_kind, item, now_ms))
            except HeraldError as exc:
                outcomes.append(exc)
        valid = [o for o in outcomes if isinstance(o, OutboundMessage)]
        accepted = iter(await self.accept_many(tenant, valid))
        return [next(accepted) if isinstance(o, OutboundMessage) else o for o in outcomes]

    async def accept_many(self, tenant: Tenant, messages: list[OutboundMessage]) -> list[Outcome]:
        """Refuse what the tenant's suppression list covers, admit and produce the rest; one
        outcome per message, in order. Raises Unavailable if the broker fails."""
        # A recipient's keyed hashes, computed once for both checks (the HMACs are per-message work).
        hashed = functools.cache(lambda to: self._hasher.candidates(tenant.id, to))
        refused = await self._suppressed(tenant.id, messages, hashed)
        if not refused:
            return await self._admit(tenant, messages, hashed)
        kept = [m for i, m in enumerate(messages) if i not in refused]
        admitted = iter(await self._admit(tenant, kept, hashed))
        return [refused[i] if i in refused else next(admitted) for i in range(len(messages))]

    async def _suppressed(
        self, tenant_id: uuid.UUID, messages: list[OutboundMessage], hashed: Callable[[str], list[bytes]]
    ) -> dict[int, HeraldError]:
        """The refusals the suppression list makes, by index (`herald.domain.suppressions`'s policy).
        Before the recipient limit: a refused recipient is never counted."""
        covered = [i for i, m in enumerate(messages) if m.category in SUPPRESSED_CATEGORIES]
        if not covered:
            return {}
        found = await suppression_store.matching(
            self._pool, tenant_id,
            [Candidate(messages[i].channel, hashed(messages[i].to)) for i in covered],
        )  # fmt: skip
        return {
            i: InvalidRequest.field(
                "to",
                f"the recipient is on the tenant's suppression list ({entry.reason}) for {entry.channel}",
                code="recipient_suppressed",
            )
            for i, entry in zip(covered, found, strict=True)
            if entry is not None
        }

    async def _admit(
        self, tenant: Tenant, messages: list[OutboundMessage], hashed: Callable[[str], list[bytes]]
    ) -> list[Outcome]:
        limit = tenant.limits.daily_recipients
        if not messages:
            return []
        # Sealed before any connection is held: sealing may need one (the hour's first message).
        sealed = await self._seal(messages)
        if limit is None:
            await self._produce(messages, sealed)
            return [Admitted(m.id, m.segments, m.not_before_ms > 0) for m in messages]
        # The reservation commits before anything is produced, and is kept if the broker then
        # fails: a retry of the same recipient is admitted without counting again, and a crash
        # between the two can only leave a recipient counted and not sent (the limit errs toward
        # refusing, never toward overshooting). So a database failure here is a 503 before
        # anything is queued, and the tenant's lock and a pool connection are never held across
        # a broker round trip, which a stalled broker would stretch to the produce timeout.
        reservation = await recipient_store.reserve(
            self._pool, tenant.id, [hashed(m.to) for m in messages], limit, datetime.now(UTC)
        )
        admitted = [i for i, ok in enumerate(reservation.admitted) if ok]
        await self._produce([messages[i] for i in admitted], [sealed[i] for i in admitted])
        refused = RateLimited(
            f"the tenant's limit of {limit} unique recipients per rolling 24 h is reached",
            code="daily_recipient_limit",
            retry_after=reservation.retry_after_seconds,
            fields=(FieldError("to", "over the daily unique-recipient limit"),),
        )
        return [
            Admitted(m.id, m.segments, m.not_before_ms > 0) if ok else refused
            for m, ok in zip(messages, reservation.admitted, strict=True)
        ]

    async def _seal(self, messages: list[OutboundMessage]) -> list[SealedMessageV2]:
        # The recipient and body never reach the broker in clear (herald.sealing). The hour's first
        # message fetches the key: a database outage there is a 503 like any other (problems.py).
        return await self._content_keys.seal(messages)

    async def _produce(self, messages: list[OutboundMessage], sealed: list[SealedMessageV2]) -> None:
        records = [
            Record(topic=class_topic(m.category), key=message_key(m.tenant_id, m.to), value=ENCODER.encode(s))
            for m, s in zip(messages, sealed, strict=True)
        ]
        try:
            await self._producer.send_many(records)
        except KafkaError as exc:
            raise Unavailable(
                "the message queue did not acknowledge; retry (with idempotency keys, retries are safe)",
                code="broker_unavailable",
                retry_after=1,
            ) from exc
        # Counted per kind, not per message: a labelled child's lookup and its lock per message
        # were measurable in a batch of 1,000 (loadtests/RESULTS.md, ingestion profile).
        for (category, channel), n in collections.Counter((m.category, m.channel) for m in messages).items():
            metrics.MESSAGES_ACCEPTED.labels(category.value, channel.value).inc(n)
