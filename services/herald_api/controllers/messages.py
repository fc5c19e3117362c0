"""Sending (one or a batch) and reading messages; the tenant's own limits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from herald import metrics
from herald.domain.models import Category, Channel
from herald.domain.search import Cursor, MessageFilter, MessageSummary, TimeRange
from herald.domain.sends import SendRequest
from herald.domain.status import Status
from herald.errors import FieldError, HeraldError, InvalidRequest
from herald_api.auth import TENANT_AUTH, Principal
from herald_api.deps import Services
from herald_api.problems import field_from_message
from herald_api.schemas import (
    NO_CONTROL,
    BatchAccepted,
    BatchCreate,
    BatchItemResult,
    CancellationOut,
    EventOut,
    ItemError,
    LimitsOut,
    MessageAccepted,
    MessageCreate,
    MessageOut,
    MessagePage,
    MessageSummaryOut,
    PhoneNumberOut,
    Price,
    TemplateUsed,
    WhatsAppLimitsOut,
)
from herald_api.services.sending import Admitted, Outcome


def decode_item(item: Any) -> SendRequest | HeraldError:
    """One batch item, validated exactly like a single send's body; its problem if it is not."""
    try:
        return msgspec.convert(item, MessageCreate, strict=True).request()
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_from_message(message)
        return InvalidRequest(message, fields=(FieldError(field, message.split(" - at ")[0]),))


def _item(index: int, outcome: Outcome) -> BatchItemResult:
    if isinstance(outcome, Admitted):
        return BatchItemResult(index=index, id=outcome.id, segments=outcome.segments)
    metrics.MESSAGES_REJECTED.labels(outcome.code).inc()
    return BatchItemResult(
        index=index,
        error=ItemError(
            code=outcome.code,
            detail=outcome.detail,
            fields=[f.field for f in outcome.fields],
            retry_after=outcome.retry_after,
        ),
    )


def _summary(m: MessageSummary) -> MessageSummaryOut:
    template = TemplateUsed(m.template_name, m.template_language, m.template_version)
    return MessageSummaryOut(
        id=m.id, status=m.status, channel=m.channel, category=Category(m.category), template=template,
        created_at=m.created_at, updated_at=m.updated_at, segments=m.segments, reference=m.reference,
    )  # fmt: skip


class MessageController(Controller):
    path = "/v1/messages"
    tags = ["messages"]
    middleware = [TENANT_AUTH]

    @post("/", status_code=202, summary="Send one templated message; 202 once the queue has it")
    async def send(self, data: JSONBody[MessageCreate], request: Request[Principal, None, State]) -> MessageAccepted:
        # The hot path reads principal and services off the request instead of through DI (profiled).
        services: Services = request.app.state.services
        principal = request.user
        admitted = await services.sender.accept(principal.tenant, principal.key_kind, data.request())
        status = Status.SCHEDULED if admitted.scheduled else Status.ACCEPTED
        return MessageAccepted(id=admitted.id, segments=admitted.segments, status=status)

    @post("/batch", status_code=202, summary="Send up to 1,000 messages; each item accepted or rejected on its own")
    async def send_batch(self, data: JSONBody[BatchCreate], request: Request[Principal, None, State]) -> BatchAccepted:
        services: Services = request.app.state.services
        principal = request.user
        items = [decode_item(item) for item in data.messages]
        outcomes = await services.sender.accept_batch(principal.tenant, principal.key_kind, items)
        results = [_item(i, o) for i, o in enumerate(outcomes)]
        accepted = sum(1 for r in results if r.id is not None)
        return BatchAccepted(accepted=accepted, rejected=len(results) - accepted, results=results)

    @get("/", summary="Find messages again: filtered, newest first, a page at a time (`after`: the previous `next`)")
    async def search(
        self,
        principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
        status: FromQuery[Status | None] = None,
        reference: FromQuery[Annotated[str | None, Parameter(min_length=1, max_length=128, pattern=NO_CONTROL)]] = None,
        template: FromQuery[Annotated[str | None, Parameter(min_length=1, max_length=512, pattern=NO_CONTROL)]] = None,
        channel: FromQuery[Channel | None] = None,
        campaign: FromQuery[uuid.UUID | None] = None,
        created_after: FromQuery[Annotated[datetime | None, Parameter(description="Inclusive, with an offset")]] = None,
        created_before: FromQuery[Annotated[datetime | None, Parameter(description="Exclusive")]] = None,
        after: FromQuery[Annotated[str | None, Parameter(max_length=128)]] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=1000)]] = 100,
    ) -> MessagePage:
        found = MessageFilter(status, reference, template, channel, TimeRange(created_after, created_before), campaign)
        cursor = None if after is None else Cursor.decode(after)
        page, following = await svc.reading.messages(principal.tenant.id, found, cursor, limit)
        return MessagePage(items=[_summary(m) for m in page], next=None if following is None else following.encode())

    @delete("/{message_id:uuid}", status_code=202,
            summary="Cancel a scheduled message, or a queued one before a provider has it")  # fmt: skip
    async def cancel(
        self, message_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> CancellationOut:
        cancelled = await svc.cancelling.cancel(principal.tenant.id, message_id)
        return CancellationOut(id=message_id, cancellation="cancelled" if cancelled else "requested")

    @get("/{message_id:uuid}", summary="Status and event timeline of a message")
    async def read(
        self, message_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> MessageOut:
        view = await svc.reading.message(principal.tenant.id, message_id)
        return MessageOut(
            id=view.id,
            status=view.status,
            channel=Channel(view.channel),
            category=Category(view.category),
            template=TemplateUsed(view.template_name, view.template_language, view.template_version),
            created_at=view.created_at,
            reference=view.reference,
            events=[
                EventOut(
                    status=e.status, at=e.at, detail=e.detail, provider_error=e.provider_error, provider=e.provider
                )
                for e in view.events
            ],
            segments=view.segments,
            price=None
            if view.charge is None
            else Price(
                **msgspec.structs.asdict(view.charge),
                amount_micros=view.charge.quantity * view.charge.unit_price_micros,
            ),
            replay_of=view.replay_of,
        )


class LimitsController(Controller):
    path = "/v1/limits"
    tags = ["messages"]
    middleware = [TENANT_AUTH]

    @get("/", summary="Tier, rates, the daily recipient limit and what remains of it")
    async def limits(self, principal: NamedDependency[Principal], svc: NamedDependency[Services]) -> LimitsOut:
        t = principal.tenant
        limits = await svc.reading.limits(t)
        account = await svc.whatsapp.connected(t.id)
        whatsapp = None
        if account is not None:
            whatsapp = WhatsAppLimitsOut(
                messaging_limit=account.messaging_limit.value,
                unique_users_24h=account.messaging_limit.unique_users,
                quality=account.quality,
                phone_numbers=[PhoneNumberOut(n.id, n.throughput, n.display_phone_number) for n in account.numbers],
            )
        return LimitsOut(
            tier=t.tier,
            verified=t.verified,
            rate_per_second=limits.rate_per_second,
            daily_recipient_limit=limits.daily_recipients,
            recipients_used_24h=limits.recipients_used_24h,
            recipients_remaining_24h=limits.remaining,
            whatsapp=whatsapp,
        )
