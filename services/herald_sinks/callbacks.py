"""Tenant status callbacks: record durably, then dispatch with retries and per-tenant isolation.

`CallbackRecorder` is the handler of consumer group `herald-sinks-callbacks` on `herald.events`:
it writes one outbox row per (message, status) for tenants with a callback URL, and the loop
commits the offsets only after that insert. Delivery never blocks consumption.

`Dispatcher` leases due rows (a message's in status order, see `herald.db.callbacks`) and
sends them as independent tasks: at most `callback_per_tenant_in_flight` per tenant across every
sinks process, so a slow or failing endpoint only ever delays its own tenant, and two
dispatchers never send the same row. Each POST carries
`Herald-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`. 2xx marks the row done;
5xx, 429 (honouring Retry-After) and timeouts retry with exponential backoff for
`callback_retry_hours`; other 4xx are the receiver refusing: the row is marked dead. So is a
URL that the callback policy refuses at dispatch (`herald.callback_urls`: a port no
longer allowed, or a name that now resolves to a non-public address): nothing is dialled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import aiohttp
import asyncpg
import msgspec

from herald import metrics, signing
from herald.batching import BatchedCache
from herald.callback_urls import AddressNotAllowed, CallbackPolicy, GuardedResolver, check_target
from herald.db import callbacks as outbox
from herald.db import tenants
from herald.db.pool import DATABASE_ERRORS, until_written
from herald.db.tenants import CallbackConfig
from herald.domain.reasons import Reason
from herald.domain.records import decode_event
from herald.domain.status import RANK, Status
from herald.errors import InvalidRequest
from herald.kafka.consumer import Batch, decoded
from herald_sinks.settings import SinkSettings

log = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 60.0
NOT_ALLOWED = "not_allowed"
"""The outcome of a callback whose target the policy refuses at dispatch."""


class CallbackV1(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag="message.status"):
    """The JSON body a tenant receives, `"type": "message.status"` always written (a tenant also
    receives `recipient.suppressed`, `herald.domain.suppressions.SuppressedCallbackV1`).
    Receivers should dedupe on (message_id, status)."""

    message_id: uuid.UUID
    status: str
    at: datetime
    reason: Reason | None = None
    """Why it failed or expired (`herald.domain.reasons`)."""


class CallbackConfigs:
    """Tenants' callback URL and secret, cached for 5 s: a changed URL or rotated secret takes
    effect within that. One instance per process, shared by recorder and dispatcher."""

    def __init__(self, pool: asyncpg.Pool, cache_seconds: float = 5.0) -> None:
        # The tenants asked for at one moment are read in one statement: with thousands of
        # tenants each is rarely fresh, and one round trip each was one per event.
        self._configs: BatchedCache[uuid.UUID, CallbackConfig | None] = BatchedCache(
            lambda tenant_ids: tenants.callback_configs(pool, tenant_ids), cache_seconds
        )

    async def get(self, tenant_id: uuid.UUID) -> CallbackConfig | None:
        return await self._configs.get(tenant_id)


class CallbackRecorder:
    def __init__(self, pool: asyncpg.Pool, configs: CallbackConfigs) -> None:
        self._pool = pool
        self._configs = configs

    async def __call__(self, batch: Batch) -> None:
        pending: list[outbox.Pending] = []
        events = [event for _, _, event in decoded(batch, decode_event)]
        # Every tenant of the batch asked at once (one statement for those not cached).
        tenant_ids = list({event.tenant_id: None for event in events})
        configs = dict(zip(tenant_ids, await asyncio.gather(
            *(until_written(partial(self._configs.get, tenant_id)) for tenant_id in tenant_ids)
        ), strict=True))  # fmt: skip
        for event in events:
            config = configs[event.tenant_id]
            if config is None:
                continue
            body = CallbackV1(
                message_id=event.message_id, status=event.status.value,
                at=datetime.fromtimestamp(event.at_ms / 1000, tz=UTC), reason=event.reason,
            )  # fmt: skip
            pending.append(
                outbox.Pending(
                    event.message_id, event.tenant_id, event.status.value, msgspec.json.encode(body),
                    rank=RANK[event.status],
                    # Only the provider names its message id after accepting: a receipt.
                    follows_sent=event.status is not Status.SENT and event.provider_message_id is not None,
                )
            )  # fmt: skip
        # Both waits are for the database: a sink retries it itself (ConsumerLoop stops the
        # process on a transient error that reaches it); a replayed record finds its own row.
        metrics.CALLBACKS_STALE.inc(await until_written(partial(outbox.record, self._pool, pending)))


class Dispatcher:
    def __init__(
        self, pool: asyncpg.Pool, settings: SinkSettings, configs: CallbackConfigs, policy: CallbackPolicy
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._policy = policy
        self._in_flight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._configs = configs
        self._session: aiohttp.ClientSession | None = None
        # Outlasts a delivery (the config lookup, the POST's timeout, the bookkeeping); only a
        # dispatcher that died holding a row makes it wait this long.
        self._lease = timedelta(seconds=2 * settings.callback_timeout_seconds + 10)

    async def run(self, stop: asyncio.Event) -> None:
        # The URL was checked when it was set; its name may resolve elsewhere now (DNS rebinding),
        # so every connection goes through the resolver that applies the same policy.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.callback_timeout_seconds),
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._policy)),
        )
        purged_at = 0.0
        try:
            while not stop.is_set():
                try:
                    await self._start_due()
                    if time.monotonic() - purged_at >= PURGE_EVERY_SECONDS:
                        keep = timedelta(seconds=self._settings.callback_keep_sent_seconds)
                        await outbox.purge_delivered(self._pool, datetime.now(UTC) - keep)
                        purged_at = time.monotonic()
                except DATABASE_ERRORS as exc:
                    log.warning("callback dispatch poll failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self._settings.callback_poll_seconds)
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self._settings.callback_timeout_seconds + 1)
            await self._session.close()

    async def _start_due(self) -> None:
        # The per-tenant cap holds across dispatchers: leased rows count against it (lease_due).
        rows = await outbox.lease_due(
            self._pool,
            per_tenant=self._settings.callback_per_tenant_in_flight,
            limit=500,
            hold=timedelta(seconds=self._settings.callback_order_hold_seconds),
            lease=self._lease,
        )
        for row in rows:
            if row.id in self._in_flight:  # its lease ran out while its POST still hangs
                continue
            self._in_flight.add(row.id)
            task = asyncio.create_task(self._deliver(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, row: outbox.Due) -> None:
        started = time.perf_counter()
        try:
            config = await self._configs.get(row.tenant_id)
            if config is None:
                await outbox.dead(self._pool, row.id, "no callback url")
                return
            outcome, retry_after = await self._post(config, row.payload)
            metrics.CALLBACK_OUTCOMES.labels(outcome).inc()
            metrics.CALLBACK_SECONDS.observe(time.perf_counter() - started)
            if outcome == "delivered":
                await outbox.delivered(self._pool, row.id)
            elif outcome in ("refused", NOT_ALLOWED):
                await outbox.dead(self._pool, row.id, outcome)
            elif datetime.now(UTC) - row.created_at > timedelta(hours=self._settings.callback_retry_hours):
                await outbox.dead(self._pool, row.id, f"{outcome}; retry window over")
            else:
                delay = max(retry_after or 0.0, min(3600.0, 2.0**row.attempts) * random.uniform(0.8, 1.2))
                await outbox.retry_later(self._pool, row.id, timedelta(seconds=delay), outcome)
        except DATABASE_ERRORS as exc:
            log.warning("callback bookkeeping failed; will retry", extra={"error": type(exc).__name__})
        finally:
            self._in_flight.discard(row.id)

    async def _post(self, config: CallbackConfig, body: bytes) -> tuple[str, float | None]:
        assert self._session is not None
        headers = {"content-type": "application/json", "herald-signature": signing.sign(config.secret, body)}
        try:
            check_target(config.url, self._policy)
            async with self._session.post(config.url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                retry_after = response.headers.get("retry-after")
        except InvalidRequest:
            return NOT_ALLOWED, None
        except aiohttp.ClientConnectorError as exc:
            return (NOT_ALLOWED if isinstance(exc.os_error, AddressNotAllowed) else "timeout_or_network"), None
        except (aiohttp.ClientError, TimeoutError):
            return "timeout_or_network", None
        if 200 <= status < 300:
            return "delivered", None
        if status == 429 or status >= 500:
            try:
                return f"http_{status}", float(retry_after) if retry_after else None
            except ValueError:
                return f"http_{status}", None
        return "refused", None
