"""SMS routing: the configuration each worker applies, and the provider the deliverer calls.

`SmsRoutes` reads the providers and routes (`herald.db.sms_config`) when their version changes
(polled every `refresh_seconds`) and keeps one adapter and one capacity gate per provider: a
provider whose configuration or secret changed gets new ones, and the old adapter is closed
once what it had in flight is over (`RETIRE_SECONDS`).

`SmsRouter.send` takes the message's route (`herald.domain.sms_routing`) and tries its providers
in rank order, those in rotation first (`health.Health`). It moves on to the next provider
when the one tried certainly did not take the message (`RetryableError.untaken`), and passes over
one whose capacity gate is shut (its rate spent, or throttling) unless it is the last; an attempt
whose answer was lost pins the message to that provider (`RetryableError.pinned`, then
`MessageEnvelope.provider_pin`), and every later attempt goes there alone, so two providers never
both deliver one message. A message no route covers goes to `fallback` (the configured carrier).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from typing import Protocol

import asyncpg
import msgspec

from herald import metrics
from herald.db import sms_config as store
from herald.domain.models import Channel
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.domain.sms_routing import Route, SmsProvider, ranked, route_for
from herald.domain.suppressions import SuppressionReason
from herald.keyring import KeyRing
from herald_worker.provider_gate import ProviderGate
from herald_worker.providers.base import Accepted, PermanentError, Provider, RetryableError
from herald_worker.sms.health import Health
from herald_worker.sms.inbound import Inbound

log = logging.getLogger(__name__)
RETIRE_SECONDS = 15.0


class Adapter(Protocol):
    name: str

    async def send(self, message: OutboundMessage) -> Accepted: ...
    async def close(self) -> None: ...


class Live:
    """A configured provider as this worker holds it."""

    def __init__(self, config: SmsProvider, secret: str | None, adapter: Adapter, gate: ProviderGate) -> None:
        self.config, self.secret, self.adapter, self.gate = config, secret, adapter, gate

    @property
    def name(self) -> str:
        return self.config.name

    async def close(self) -> None:
        await self.adapter.close()
        await self.gate.close()


class SmsRoutes:
    def __init__(
        self,
        pool: asyncpg.Pool,
        ring: KeyRing,
        adapter: Callable[[SmsProvider, str | None], Adapter],
        gate: Callable[[SmsProvider], ProviderGate],
        refresh_seconds: float,
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._adapter = adapter
        self._gate = gate
        self._refresh = refresh_seconds
        self._version = -1
        self._live: dict[str, Live] = {}
        self._routes: tuple[Route, ...] = ()
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        """Whether any sms route is configured (else every sms goes to the fallback)."""
        return bool(self._routes)

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._routes

    def route(self, message: OutboundMessage) -> Route | None:
        return route_for(self._routes, message.tenant_id, message.country) if self._routes else None

    def live(self, name: str) -> Live | None:
        return self._live.get(name)

    def ranked(self, route: Route, country: str | None) -> list[Live]:
        configs = {name: live.config for name, live in self._live.items()}
        return [self._live[p.name] for p in ranked(route, configs, country)]

    async def refresh(self) -> bool:
        """Apply the stored configuration if it changed; whether it did."""
        if await store.version(self._pool) == self._version:
            return False
        config = await store.load(self._pool, self._ring)
        kept: dict[str, Live] = {}
        built: list[Live] = []
        try:
            for name, provider in config.providers.items():
                secret = config.secrets.get(name)
                current = self._live.get(name)
                if current is not None and (current.config, current.secret) == (provider, secret):
                    kept[name] = current
                    continue
                gate = self._gate(provider)
                gate.attach(lambda: None)  # waited on by polling (`before_attempt`), not by dispatch
                kept[name] = live = Live(provider, secret, self._adapter(provider, secret), gate)
                built.append(live)
        except BaseException:
            for live in built:  # nothing half-applied: the configuration in hand stays
                await live.close()
            raise
        for live in built:
            metrics.SMS_PROVIDER_HEALTHY.labels(live.name).set(1)
        for name, old in self._live.items():
            if kept.get(name) is not old:
                self._retire(old)
        self._live, self._routes, self._version = kept, config.routes, config.version
        metrics.SMS_CONFIG_VERSION.set(config.version)
        log.info("sms configuration applied", extra={"version": config.version, "providers": len(kept),
                                                     "routes": len(config.routes)})  # fmt: skip
        return True

    def _retire(self, old: Live) -> None:
        async def later() -> None:
            await asyncio.sleep(RETIRE_SECONDS)
            await old.close()

        task = asyncio.create_task(later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every `refresh_seconds` until `stop`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._refresh)
            if stop.is_set():
                return
            try:
                await self.refresh()
            except Exception as exc:  # the configuration in hand stays; the next poll tries again
                log.warning("sms configuration not refreshed", extra={"error": type(exc).__name__})

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for live in self._live.values():
            with contextlib.suppress(Exception):
                await live.close()
        self._live = {}


def _sent_by(accepted: Accepted, adapter: str) -> Accepted:
    """A send the router passed on is recorded under the name its receipts arrive under: the
    adapter's own (`carrier-sim` for the carrier), or the one it named; never the router's "sms",
    to which no receipt binds."""
    return accepted if accepted.provider else msgspec.structs.replace(accepted, provider=adapter)


class SmsRouter:
    name = "sms"

    def __init__(self, routes: SmsRoutes, health: Health, fallback: Provider, inbound: Inbound) -> None:
        self._routes = routes
        self._health = health
        self._fallback = fallback
        self._inbound = inbound

    def gates_itself(self, channel: Channel) -> bool:
        """For the dispatcher: routed sms wait for their provider's own gate, not the carrier's."""
        return channel is Channel.SMS and self._routes.active

    async def send(self, message: OutboundMessage) -> Accepted:
        route = self._routes.route(message)
        if route is None:
            return _sent_by(await self._fallback.send(message), self._fallback.name)
        if message.provider_pin is not None:
            pinned = self._routes.live(message.provider_pin)
            if pinned is None:  # the provider that may have it is gone: it waits, and expires
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, pinned=message.provider_pin)
            return await self._attempt(route, pinned, message, pinned=True)
        candidates = self._routes.ranked(route, message.country)
        usable = [live for live in candidates if self._health.usable(live.name)]
        last: RetryableError | None = None
        order = usable + [live for live in candidates if live not in usable]
        for live in order:
            if live is not order[-1] and not live.gate.ready():
                # Its capacity is spent or it throttles us: the next provider takes the message
                # now rather than it waiting for this one's gate. The last one is waited for.
                metrics.SMS_ROUTE_ATTEMPTS.labels(route.label, live.name, "skipped").inc()
                self._health.settled(live.name)
                continue
            try:
                return await self._attempt(route, live, message, pinned=False)
            except RetryableError as exc:
                if not exc.untaken:
                    raise
                last = exc
        metrics.SMS_ROUTE_ATTEMPTS.labels(route.label, "-", "exhausted").inc()
        if last is None:
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True)  # every provider disabled
        raise last

    async def _attempt(self, route: Route, live: Live, message: OutboundMessage, *, pinned: bool) -> Accepted:
        name = live.name
        try:  # the gate sees every answer (throttling, acceptance, silence) through `through`
            accepted = await live.gate.through(message.id, partial(live.adapter.send, message))
        except RetryableError as exc:
            if exc.reason is Reason.THROTTLED:
                self._health.settled(name)
            else:
                self._health.failed(name)
                self._observe(route)
            if exc.untaken and not pinned:
                metrics.SMS_ROUTE_ATTEMPTS.labels(route.label, name, "failover").inc()
                raise
            metrics.SMS_ROUTE_ATTEMPTS.labels(route.label, name, "pinned").inc()
            raise RetryableError(exc.reason, exc.retry_after, pinned=name, lost=exc.lost) from exc
        except PermanentError as exc:
            self._health.succeeded(name)  # it answered
            metrics.SMS_ROUTE_ATTEMPTS.labels(route.label, name, "refused").inc()
            if exc.reason is Reason.OPTED_OUT:
                await self._inbound.suppress(message.tenant_id, message.to, SuppressionReason.PROVIDER_OPT_OUT)
            raise
        recovered = not self._health.healthy(name)
        self._health.succeeded(name)
        if recovered:
            self._observe(route)
        metrics.SMS_ROUTE_ATTEMPTS.labels(route.label, name, "accepted").inc()
        return _sent_by(accepted, live.adapter.name)

    def _observe(self, route: Route) -> None:
        metrics.SMS_ROUTE_HEALTHY_PROVIDERS.labels(route.label).set(
            sum(self._health.healthy(p) for p in route.providers if self._routes.live(p) is not None)
        )

    def observe_all(self) -> None:
        for route in self._routes.routes:
            self._observe(route)

    async def close(self) -> None:
        await self._routes.close()
        await self._fallback.close()
