"""WhatsApp through each tenant's own Business Account (Meta's Graph API).

A message is a template message: its name and language, and the body's parameters in order (the
sealed content of a whatsapp message, `herald.whatsapp.templates`); Meta renders it. It goes from
one of the tenant's numbers (the same one for a recipient every time), with the tenant's token,
and carries Herald's message id as `biz_opaque_callback_data`, which Meta echoes in its statuses.

Before Meta is asked: an account that is not connected fails the message
(`channel_not_connected`); a suspended one postpones it (`account_suspended`, no attempt spent);
a template paused or disabled fails it unsent (`template_paused`, `template_disabled`). Each
number's throughput is held across every worker by its own token bucket in Postgres (the
provider gate, one per number). Meta's answers, by `error.code` (`herald.whatsapp.codes`):
throughput and account rate shut that number's gate and are retried; pair rate is a busy
recipient; a spam or quality limit sends the message, and its tenant's next ones from this worker,
back on `herald.retry` for a minute; template,
parameter, window, opt-out and undeliverable codes fail with their reasons; an expired token
suspends the account (alerting) and postpones; 5xx, timeouts and resets are retried.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Callable
from typing import NoReturn

import asyncpg

from herald import metrics
from herald.caches import TTLCache
from herald.db import templates as template_store
from herald.db import whatsapp as accounts
from herald.domain.models import TemplateStatus
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.domain.whatsapp import Account, AccountStatus, PhoneNumber, Secrets
from herald.keyring import KeyRing
from herald.whatsapp import codes
from herald.whatsapp.graph import Graph, GraphError, GraphUnavailable
from herald.whatsapp.templates import send_components
from herald.whatsapp.wire import Language, SendRequest, TemplateSend
from herald_worker.provider_gate import ProviderGate
from herald_worker.providers.base import Accepted, PermanentError, Postponed, RetryableError

log = logging.getLogger(__name__)
TENANT_LIMITED_SECONDS = 60.0
"""After a spam-rate or quality limit, the message goes back on `herald.retry` this much later."""
_UNSENDABLE = {TemplateStatus.PAUSED: Reason.TEMPLATE_PAUSED, TemplateStatus.DISABLED: Reason.TEMPLATE_DISABLED,
               TemplateStatus.REJECTED: Reason.TEMPLATE_INVALID}  # fmt: skip


class Accounts:
    """Each tenant's account and opened secrets, cached for `ttl` seconds (a rotated token or a
    revoked account reaches every worker within it)."""

    def __init__(self, pool: asyncpg.Pool, ring: KeyRing, ttl: float) -> None:
        self._pool = pool
        self._ring = ring
        self._cache: TTLCache[uuid.UUID, tuple[Account, Secrets] | None] = TTLCache(ttl)

    async def get(self, tenant_id: uuid.UUID) -> tuple[Account, Secrets] | None:
        return await self._cache.get(tenant_id, lambda: self._load(tenant_id))

    async def _load(self, tenant_id: uuid.UUID) -> tuple[Account, Secrets] | None:
        account = await accounts.get(self._pool, tenant_id)
        secrets = None if account is None else await accounts.secrets(self._pool, self._ring, tenant_id)
        return None if account is None or secrets is None else (account, secrets)

    async def suspend(self, account: Account, code: int) -> None:
        """Meta refused the token read at `account.rotated_at`: suspend the account (unless the
        tenant rotated it meanwhile), once, loudly."""
        why = f"Meta refused the token (code {code})"
        if await accounts.suspend(self._pool, account.tenant_id, why, account.rotated_at):
            metrics.WHATSAPP_ACCOUNTS_SUSPENDED.inc()
            where = {"tenant_id": str(account.tenant_id), "waba_id": account.waba_id, "code": code}
            log.error("whatsapp account suspended: Meta refused its token", extra=where)
        self._cache.invalidate(account.tenant_id)


class TemplateStatuses:
    """The status of each tenant's whatsapp templates here, cached for `ttl` seconds."""

    def __init__(self, pool: asyncpg.Pool, ttl: float) -> None:
        self._pool = pool
        self._cache: TTLCache[tuple[uuid.UUID, str, str], TemplateStatus | None] = TTLCache(ttl)

    async def get(self, tenant_id: uuid.UUID, name: str, language: str) -> TemplateStatus | None:
        async def load() -> TemplateStatus | None:
            found = await template_store.latest(self._pool, tenant_id, name, language)
            return None if found is None else found.status

        return await self._cache.get((tenant_id, name, language), load)


class WhatsAppProvider:
    name = "whatsapp"

    def __init__(
        self,
        graph: Graph,
        accounts: Accounts,
        templates: TemplateStatuses,
        gate_for: Callable[[PhoneNumber], ProviderGate],
        recheck_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`gate_for(number)` is that number's capacity gate (one per number per process); a
        suspended account's messages come back every `recheck_seconds`."""
        self._recheck = recheck_seconds
        self._graph = graph
        self._accounts = accounts
        self._templates = templates
        self._gate_for = gate_for
        self._gates: dict[str, ProviderGate] = {}
        self._clock = clock
        self._limited_until: dict[uuid.UUID, float] = {}
        """Tenants Meta told to slow down (spam rate, quality): until when their sends wait."""

    async def send(self, message: OutboundMessage) -> Accepted:
        found = await self._accounts.get(message.tenant_id)
        if found is None:
            raise PermanentError(Reason.CHANNEL_NOT_CONNECTED)
        account, secrets = found
        if account.status is AccountStatus.SUSPENDED:
            raise Postponed(Reason.ACCOUNT_SUSPENDED, self._recheck)
        if (until := self._limited_until.get(message.tenant_id)) is not None:
            if (left := until - self._clock()) > 0:
                # Meta limited this tenant a moment ago: its sends wait that out on herald.retry
                # rather than each being refused again (and counting against its quality).
                raise RetryableError(Reason.THROTTLED, left)
            del self._limited_until[message.tenant_id]
        status = await self._templates.get(message.tenant_id, message.template_name, message.template_language)
        if status in _UNSENDABLE:
            raise PermanentError(_UNSENDABLE[status])
        number = _number_for(account, message.to)
        gate = self._gate(number)
        request = SendRequest(
            to=message.to.lstrip("+"),
            template=TemplateSend(
                message.template_name, Language(message.template_language), send_components(message.body)
            ),
            biz_opaque_callback_data=str(message.id),
        )
        await gate.before_attempt(message.id)
        # Not `gate.through`: only Meta's throughput 429 shuts the number's gate (`_refused`),
        # a tenant's own limit does not.
        with gate.reporting(message.id):
            try:
                sent = await self._graph.send(number.id, secrets.access_token, request)
            except GraphUnavailable:
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, lost=True) from None
            except GraphError as exc:
                await self._refused(account, gate, exc)
        if not sent.messages:
            raise RetryableError(Reason.PROVIDER_BAD_RESPONSE)
        return Accepted(provider_message_id=sent.messages[0].id, provider=account.provider)

    async def _refused(self, account: Account, gate: ProviderGate, exc: GraphError) -> NoReturn:
        if not codes.known(exc.code):
            log.warning("whatsapp error code not mapped", extra={"code": exc.code, "http_status": exc.http_status})
        match exc.kind:
            case codes.Kind.THROTTLED:
                gate.throttled(exc.retry_after)
                raise RetryableError(Reason.THROTTLED, exc.retry_after)
            case codes.Kind.RECIPIENT_BUSY:
                raise RetryableError(Reason.RECIPIENT_BUSY, exc.retry_after)
            case codes.Kind.TENANT_LIMITED:
                wait = max(exc.retry_after or 0.0, TENANT_LIMITED_SECONDS)
                self._limited_until[account.tenant_id] = self._clock() + wait
                raise RetryableError(Reason.THROTTLED, wait)
            case codes.Kind.CREDENTIALS:
                await self._accounts.suspend(account, exc.code)
                raise Postponed(Reason.ACCOUNT_SUSPENDED, self._recheck)
            case codes.Kind.UNAVAILABLE:
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, exc.retry_after)
            case _:
                raise PermanentError(exc.reason)

    def _gate(self, number: PhoneNumber) -> ProviderGate:
        gate = self._gates.get(number.id)
        if gate is None:
            gate = self._gates[number.id] = self._gate_for(number)
            gate.attach(lambda: None)  # waited on by polling (`before_attempt`), not by dispatch
        return gate

    async def close(self) -> None:
        for gate in self._gates.values():
            await gate.close()
        await self._graph.close()


def _number_for(account: Account, recipient: str) -> PhoneNumber:
    """The same number for a recipient every time (one conversation), spread over the numbers."""
    if len(account.numbers) == 1:
        return account.numbers[0]
    # A stable checksum, the same in every worker (str hashes are salted per process).
    return account.numbers[zlib.crc32(recipient.encode()) % len(account.numbers)]
