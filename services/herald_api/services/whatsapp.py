"""A tenant's WhatsApp Business Account: connected (secrets wrapped under the KEK), its templates
submitted to Meta, and Meta's webhooks read: statuses of sends, template reviews, quality.

A webhook is believed only once its `X-Hub-Signature-256` verifies under the app secret of the
one tenant whose account every entry of the POST names; statuses are then recorded under that
account's provider name (`whatsapp:<waba_id>`), so they can only ever bind to messages sent
through that account (`herald.domain.receipts`), whatever ids they carry. A replayed POST records
nothing new: each (send, status) is kept once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from herald import metrics
from herald.caches import TTLCache
from herald.db import templates as template_store
from herald.db import whatsapp as accounts
from herald.domain.models import Category, Channel, TemplateStatus
from herald.domain.receipts import Reported
from herald.domain.status import Status
from herald.domain.templates import Template, placeholders
from herald.domain.whatsapp import Account, MessagingTier, PhoneNumber, Secrets, TemplateParts
from herald.errors import Conflict, FieldError, Forbidden, InvalidRequest, NotFound, Unauthenticated, Unavailable
from herald.keyring import KeyRing
from herald.whatsapp import codes, signature
from herald.whatsapp.graph import Graph, GraphError, GraphUnavailable
from herald.whatsapp.templates import category_of, status_of, submission
from herald.whatsapp.wire import (
    Change,
    MessageStatus,
    MessagesValue,
    Notification,
    QualityValue,
    TemplateCategoryValue,
    TemplateStatusValue,
)
from herald_api.services.receipts import Receipts
from herald_api.services.sending import TemplateCache
from herald_api.services.tenancy import existing

log = logging.getLogger(__name__)
_NOTIFICATION = msgspec.json.Decoder(Notification)
_STATUSES = {"delivered": Status.DELIVERED, "read": Status.READ, "failed": Status.FAILED}
"""What a status webhook may say that Herald records. `sent` is Herald's own (the worker's, when
Meta answered the send); others (`deleted`, `warning`, ...) are skipped."""


class Connection(msgspec.Struct, frozen=True):
    waba_id: str
    display_name: str
    numbers: list[PhoneNumber]
    secrets: Secrets
    verify_token: str


class WhatsApp:
    def __init__(
        self, pool: asyncpg.Pool, ring: KeyRing, graph: Graph, cache: TemplateCache, receipts: Receipts
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._graph = graph
        self._cache = cache
        self._receipts = receipts
        self._connected: TTLCache[uuid.UUID, bool] = TTLCache(cache.ttl)

    async def is_connected(self, tenant_id: uuid.UUID) -> bool:
        """Cached while connected: a connection or disconnection through this process is seen at
        once, one through another API process within the template cache's TTL."""
        if await self._connected.get(tenant_id, lambda: accounts.connected(self._pool, tenant_id)):
            return True
        self._connected.invalidate(tenant_id)
        return False

    # --- the account -------------------------------------------------------------------------

    async def connect(self, tenant_id: uuid.UUID, connection: Connection) -> Account:
        """Connect the tenant's account (or replace its secrets: a rotation), once Meta accepted
        the token for the WABA. Raises InvalidRequest (`whatsapp_token_refused`), Conflict
        (`whatsapp_account_taken`), Unavailable (`whatsapp_unavailable`), NotFound
        (`tenant_not_found`) for an admin naming an unknown tenant."""
        await existing(self._pool, tenant_id)
        try:
            await self._graph.list_templates(connection.waba_id, connection.secrets.access_token)
        except GraphError as exc:
            field = "access_token" if exc.kind is codes.Kind.CREDENTIALS else "waba_id"
            raise InvalidRequest.field(
                field, f"Meta refused it (code {exc.code})", code="whatsapp_token_refused"
            ) from None
        except GraphUnavailable:
            raise Unavailable(
                "Meta's Graph API did not answer; retry", code="whatsapp_unavailable", retry_after=5
            ) from None
        try:
            return await accounts.connect(
                self._pool, self._ring, tenant_id, waba_id=connection.waba_id, display_name=connection.display_name,
                numbers=connection.numbers, secrets=connection.secrets, verify_token=connection.verify_token,
            )  # fmt: skip
        except accounts.WabaTaken:
            raise Conflict(
                "this WhatsApp Business Account or one of its numbers is connected to another tenant",
                code="whatsapp_account_taken",
            ) from None

    async def account(self, tenant_id: uuid.UUID) -> Account:
        found = await accounts.get(self._pool, tenant_id)
        if found is None:
            raise NotFound("no WhatsApp Business Account is connected", code="whatsapp_not_connected")
        return found

    async def connected(self, tenant_id: uuid.UUID) -> Account | None:
        return await accounts.get(self._pool, tenant_id)

    async def disconnect(self, tenant_id: uuid.UUID) -> None:
        """Forget the account and its secrets: its waiting messages fail `channel_not_connected`."""
        self._connected.invalidate(tenant_id)
        if not await accounts.disconnect(self._pool, tenant_id):
            raise NotFound("no WhatsApp Business Account is connected", code="whatsapp_not_connected")

    # --- templates ---------------------------------------------------------------------------

    async def submit(
        self, tenant_id: uuid.UUID, name: str, language: str, category: Category, body: str, parts: TemplateParts
    ) -> Template:
        """Submit a whatsapp template to Meta and keep it `pending` under Meta's id."""
        missing = [n for n in placeholders(body) if n not in parts.examples]
        extra = sorted(set(parts.examples) - set(placeholders(body)))
        if missing or extra:
            problems = [
                FieldError(f"whatsapp.examples.{n}", "Meta needs an example for each placeholder") for n in missing
            ]
            problems += [FieldError(f"whatsapp.examples.{n}", "is not a placeholder of the body") for n in extra]
            raise InvalidRequest("every placeholder needs one example", code="template_invalid", fields=tuple(problems))
        if await template_store.exists(self._pool, tenant_id, name, language):
            # Meta keeps a name per language (a deleted one for 30 days): a new version would be an
            # edit of the approved template, which this version of Herald does not make.
            raise Conflict(
                f"a whatsapp template {name!r} in {language!r} exists: choose another name",
                code="whatsapp_template_exists",
            )
        account = await self.account(tenant_id)
        secrets = await accounts.secrets(self._pool, self._ring, tenant_id)
        assert secrets is not None
        try:
            created = await self._graph.create_template(
                account.waba_id, secrets.access_token, submission(name, language, category, body, parts)
            )
        except GraphError as exc:
            if exc.kind is codes.Kind.CREDENTIALS:
                raise InvalidRequest.field(
                    "whatsapp", f"Meta refused the account's token (code {exc.code}): connect it again",
                    code="whatsapp_token_refused",
                ) from None  # fmt: skip
            raise InvalidRequest.field(
                "body", f"Meta refused the template: {exc.message}", code="template_invalid"
            ) from None
        except GraphUnavailable:
            raise Unavailable(
                "Meta's Graph API did not answer; retry", code="whatsapp_unavailable", retry_after=5
            ) from None
        made = await template_store.create(
            self._pool, tenant_id, name, language, category_of(created.category) or category, Channel.WHATSAPP, body,
            status=status_of(created.status) or TemplateStatus.PENDING, parts=parts,
            provider_template_id=created.id,
        )  # fmt: skip
        self._cache.invalidate(tenant_id, name, language)
        return made

    async def review(self, tenant_id: uuid.UUID, template_id: str, status: TemplateStatus,
                     category: Category | None, reason: str | None) -> None:  # fmt: skip
        """Meta's word on a template (webhook or sweep) applied: sends see it within the
        template cache's TTL; queued messages of a paused or disabled one fail unsent."""
        if await template_store.set_review(
            self._pool, tenant_id, template_id, status, category=category, reason=reason
        ):
            metrics.WHATSAPP_TEMPLATE_REVIEWS.labels(status.value).inc()

    # --- webhooks ----------------------------------------------------------------------------

    async def subscription(self, mode: str, verify_token: str, challenge: str) -> str:
        """Meta's handshake when an app's webhook is set: the challenge back if some connected
        account chose this verify token. Forbidden (403) otherwise, as Meta expects."""
        if mode != "subscribe" or not await accounts.verify_token_matches(self._pool, verify_token):
            raise Forbidden("unknown verify token", code="invalid_verify_token")
        return challenge

    async def notified(self, raw: bytes, signed: str) -> None:
        """A webhook POST, verified, then applied. Raises Unauthenticated (`invalid_signature`)
        with nothing recorded when the signature does not verify under the app secret of the
        account every entry names."""
        try:
            notification = _NOTIFICATION.decode(raw)
        except msgspec.DecodeError:
            raise Unauthenticated("not a signed WhatsApp notification", code="invalid_signature") from None
        wabas = {entry.id for entry in notification.entry}
        account = await accounts.by_waba(self._pool, next(iter(wabas))) if len(wabas) == 1 else None
        secrets = None if account is None else await accounts.secrets(self._pool, self._ring, account.tenant_id)
        if account is None or secrets is None or not signature.verify(secrets.app_secret.encode(), signed, raw):
            metrics.WHATSAPP_WEBHOOKS.labels("refused").inc()
            raise Unauthenticated("bad or missing X-Hub-Signature-256", code="invalid_signature")
        metrics.WHATSAPP_WEBHOOKS.labels("verified").inc()
        for entry in notification.entry:
            for change in entry.changes:
                await self._apply(account, change)

    async def _apply(self, account: Account, change: Change) -> None:
        try:
            if change.field == "messages":
                value = msgspec.json.decode(change.value, type=MessagesValue)
                if value.metadata.phone_number_id not in {n.id for n in account.numbers}:
                    log.warning("statuses for a number the account does not list; skipped")
                    return
                await self._statuses(account, value.statuses)
            elif change.field == "message_template_status_update":
                update = msgspec.json.decode(change.value, type=TemplateStatusValue)
                if (status := status_of(update.event)) is not None:
                    await self.review(account.tenant_id, str(update.message_template_id), status, None, update.reason)
            elif change.field == "template_category_update":
                moved = msgspec.json.decode(change.value, type=TemplateCategoryValue)
                await self._recategorised(account, moved)
            elif change.field == "phone_number_quality_update":
                quality = msgspec.json.decode(change.value, type=QualityValue)
                await accounts.set_quality(
                    self._pool, account.waba_id, MessagingTier.parse(quality.current_limit), quality.event
                )
        except msgspec.ValidationError as exc:
            # Signed by the tenant's app, but not Meta's shape: nothing of it is applied, and Meta
            # would retry a non-200 for days, so it is logged and answered.
            log.warning("a verified webhook change did not decode", extra={"field": change.field, "error": str(exc)})

    async def _recategorised(self, account: Account, moved: TemplateCategoryValue) -> None:
        if (category := category_of(moved.new_category)) is not None:
            await template_store.set_review(
                self._pool, account.tenant_id, str(moved.message_template_id), None, category=category
            )

    async def _statuses(self, account: Account, statuses: Sequence[MessageStatus]) -> None:
        reports = [r for s in statuses if (r := _reported(s)) is not None]
        if reports:
            await self._receipts.record(account.provider, reports)


def _reported(status: MessageStatus) -> Reported | None:
    kind = _STATUSES.get(status.status)
    if kind is None:
        return None
    try:
        at_ms: int | None = int(status.timestamp) * 1000
    except ValueError:
        at_ms = None
    try:
        callback = None if status.biz_opaque_callback_data is None else uuid.UUID(status.biz_opaque_callback_data)
    except ValueError:
        callback = None
    error = status.errors[0] if status.errors else None
    pricing = status.pricing
    return Reported(
        provider_message_id=status.id, status=kind, at_ms=at_ms,
        reason=None if kind is not Status.FAILED else codes.receipt_reason(error.code if error else -1).value,
        callback_data=callback,
        pricing_category=None if pricing is None or pricing.category is None else category_of(pricing.category),
        billable=None if pricing is None else pricing.billable,
        provider_error=None if error is None else f"{error.code} {error.title}"[:200],
    )  # fmt: skip
