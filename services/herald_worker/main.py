"""Wiring for `herald worker`."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer
from litestar import Litestar

from herald import metrics
from herald.db.content_keys import ContentKeys
from herald.db.pool import close_pool, create_pool
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.sms_routing import ProviderKind, SmsProvider
from herald.email.bounces import BounceAddresses
from herald.email.unsubscribe import Tokens
from herald.kafka.admin import missing_topics
from herald.kafka.consumer import make_consumer
from herald.kafka.membership import Membership
from herald.kafka.producer import Producer
from herald.kafka.topics import MESSAGE_TOPICS, RETRY, WORKER_GROUP, Names
from herald.keyring import KeyRing
from herald.ops import ops_handlers
from herald.parking import Parking
from herald.whatsapp.graph import Graph
from herald_worker.claim_store import PostgresClaims
from herald_worker.delivery import Deliverer
from herald_worker.email.compose import Composer, Identities
from herald_worker.email.connections import PostgresSlots
from herald_worker.email.router import EmailRouter
from herald_worker.email.ses import SesProvider
from herald_worker.email.smtp import SmtpProvider
from herald_worker.pacing import BucketPacer, TenantRates, observe_tier, report_utilisation
from herald_worker.pipeline import Pipeline
from herald_worker.provider_gate import ProviderGate, Throttled
from herald_worker.providers.base import Provider
from herald_worker.providers.carrier import CarrierProvider
from herald_worker.providers.sink import SinkProvider
from herald_worker.providers.whatsapp import Accounts, TemplateStatuses, WhatsAppProvider
from herald_worker.schedule import Cancellations, PostgresSchedule, Releaser
from herald_worker.settings import WorkerConfig
from herald_worker.sms.health import Health
from herald_worker.sms.inbound import Inbound
from herald_worker.sms.router import Adapter, SmsRouter, SmsRoutes
from herald_worker.sms.smpp import Deliver, SmppProvider
from herald_worker.sms.twilio import TwilioProvider
from herald_worker.suppressed import PostgresSuppressions
from herald_worker.worker import Processor

WORKER_TOPICS = (*MESSAGE_TOPICS, RETRY)


class SelfGated:
    """The channels whose providers gate themselves: whatsapp (per number), email (the relay's),
    and sms while routes are configured (per provider; otherwise sms go to the carrier the dispatcher gates)."""

    def __init__(self, sms: SmsRouter) -> None:
        self._sms = sms

    def __contains__(self, channel: object) -> bool:
        return channel in (Channel.WHATSAPP, Channel.EMAIL) or (
            channel is Channel.SMS and self._sms.gates_itself(Channel.SMS)
        )


def sms_adapter(settings: WorkerConfig, provider: SmsProvider, secret: str | None, on_deliver: Deliver) -> Adapter:
    """The adapter for a configured sms provider, by its kind."""
    w = settings.worker
    match provider.kind:
        case ProviderKind.SMPP:
            return SmppProvider(provider, secret or "", on_deliver, w.smpp_submit_timeout_seconds,
                                w.smpp_connect_timeout_seconds)  # fmt: skip
        case ProviderKind.TWILIO:
            return TwilioProvider(provider, secret or "", w.twilio_status_callback_url, w.provider_timeout_seconds,
                                  w.provider_connections)  # fmt: skip
        case ProviderKind.CARRIER:
            # Recorded as `carrier-sim`, the name its receipts arrive under.
            return CarrierProvider(provider.endpoint, w.provider_timeout_seconds, w.provider_connections)


def email_router(settings: WorkerConfig, pool: asyncpg.Pool, ring: KeyRing) -> EmailRouter:
    """The configured email providers in order, each with its capacity gate."""
    e = settings.email
    composer = Composer(e, Identities(pool, ring, e.identity_cache_seconds), Tokens(settings.secrets.keys()))
    providers: list[Provider] = []
    for name in dict.fromkeys(e.providers):
        if name == "smtp":
            slots = PostgresSlots(pool, "smtp", e.smtp_relay_connections) if e.smtp_relay_connections > 0 else None
            smtp = SmtpProvider(e, composer, BounceAddresses(settings.secrets.keys()), slots)
            providers.append(Throttled(smtp, ProviderGate.on_postgres(pool, "smtp", e.smtp_rate_per_second),
                                       own_gate=True))  # fmt: skip
        else:
            ses_gate = ProviderGate.on_postgres(pool, "ses", e.ses_rate_per_second)
            providers.append(Throttled(SesProvider(e, composer), ses_gate, own_gate=True))
    return EmailRouter(providers)


def worker_consumer(settings: WorkerConfig, names: Names) -> AIOKafkaConsumer:
    """A member of the workers' group, not subscribed yet (to `WORKER_TOPICS`). Co-partitioned:
    it owns the same partition numbers of every class topic and herald.retry, where a recipient's
    messages share one, so the recipient's lane lives in one worker (`herald.kafka.consumer`)."""
    return make_consumer(
        settings.kafka, names, WORKER_GROUP, (),
        partition_fetch_bytes=settings.worker.fetch_partition_bytes, copartitioned=True,
    )  # fmt: skip


async def run_worker(settings: WorkerConfig, stop: asyncio.Event, membership: Membership | None = None) -> None:
    """Deliver until `stop` is set, then drain within `worker.drain_seconds`. `membership` learns
    when the workers' group has given this process its partitions (readiness)."""
    membership = membership or Membership()
    names = Names(settings.kafka.topic_prefix)
    w = settings.worker
    producer = Producer(msgspec.structs.replace(settings.kafka, linger_ms=w.outcome_linger_ms), names)
    await producer.start()
    pool = await create_pool(settings.database)
    carrier = CarrierProvider(w.provider_url, w.provider_timeout_seconds, w.provider_connections)
    gate = ProviderGate.on_postgres(pool, carrier.name, w.provider_rate_per_second)
    live = Throttled(carrier, gate)
    ring = KeyRing(settings.secrets.keys())
    cached = settings.whatsapp.account_cache_seconds
    whatsapp = WhatsAppProvider(
        Graph(settings.whatsapp.graph_url, settings.whatsapp.timeout_seconds, w.provider_connections),
        Accounts(pool, ring, cached), TemplateStatuses(pool, cached),
        lambda number: ProviderGate.on_postgres(pool, f"whatsapp:{number.id}", number.throughput),
        w.suspended_recheck_seconds,
    )  # fmt: skip
    inbound = Inbound(pool, producer, RecipientHasher(settings.secrets.keys()))
    sms_routes = SmsRoutes(
        pool, ring,
        lambda provider, secret: sms_adapter(settings, provider, secret, inbound.deliver),
        lambda provider: ProviderGate.on_postgres(pool, f"sms:{provider.name}", provider.rate_per_second),
        w.sms_config_refresh_seconds,
    )  # fmt: skip
    await sms_routes.refresh()
    sms = SmsRouter(sms_routes, Health(w.sms_health_failures, w.sms_health_cooldown_seconds), live, inbound)
    sms.observe_all()
    email = email_router(settings, pool, ring)
    deliverer = Deliverer(
        live, SinkProvider(), w.provider_attempts, w.retry_delays_seconds,
        routes={Channel.WHATSAPP: whatsapp, Channel.SMS: sms, Channel.EMAIL: email},
        suppressions=PostgresSuppressions(pool, RecipientHasher(settings.secrets.keys())),
        cancellations=Cancellations(pool),
    )  # fmt: skip
    processor = Processor(deliverer, producer)
    consumer = None
    # From the start, not after the group join: a route changed meanwhile applies before the first message.
    refresher = asyncio.create_task(sms_routes.run(stop))
    releaser = asyncio.create_task(Releaser(pool, producer, w.schedule_release_interval_seconds).run(stop))
    try:
        # Subscribed once the pipeline exists: it is the rebalance listener.
        consumer = worker_consumer(settings, names)
        rates = TenantRates(pool, w.tenant_cache_seconds)
        keys = ContentKeys(pool, ring, settings.retention.content_days)
        pipeline = Pipeline(
            consumer, names, processor, w,
            content_keys=keys, gate=gate,
            claims=PostgresClaims(pool), rates=rates,
            pacer=lambda wake: BucketPacer.on_postgres(pool, rates.get, wake, observe_tier), park=Parking(pool),
            schedule=PostgresSchedule(pool), self_gated=SelfGated(sms),
        )  # fmt: skip
        consumer.subscribe(
            [names.topic(t) for t in WORKER_TOPICS], listener=membership.listener(WORKER_GROUP, pipeline)
        )
        await consumer.start()
        reporter = asyncio.create_task(report_utilisation(pool, w.utilisation_interval_seconds, stop))
        try:
            await pipeline.run(stop)
        finally:
            reporter.cancel()
    finally:
        refresher.cancel()
        releaser.cancel()
        if consumer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(consumer.stop(), 10)
        await producer.stop()
        await sms.close()  # and the carrier it falls back to
        await inbound.close()
        await whatsapp.close()
        await email.close()
        await close_pool(pool)


def ops_app(settings: WorkerConfig, membership: Membership) -> Litestar:
    names = Names(settings.kafka.topic_prefix)

    async def ready() -> dict[str, str]:
        missing = await missing_topics(settings.kafka, names)
        return {"kafka": "ok" if not missing else "missing topics"}

    return Litestar(
        route_handlers=ops_handlers(ready, cache_seconds=5.0, live=membership.check, role=metrics.Role.WORKER),
        openapi_config=None,
        logging_config=None,
    )  # fmt: skip


run = run_worker
