"""Wiring for `herald worker`."""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Litestar

from herald.db.pool import create_pool
from herald.kafka.admin import missing_topics
from herald.kafka.consumer import ConsumerLoop, drain, make_consumer
from herald.kafka.producer import Producer
from herald.kafka.topics import MESSAGE_TOPICS, WORKER_GROUP, Names
from herald.ops import ops_handlers
from herald.runtime import until_stopped
from herald.settings import Settings
from herald_worker.delivery import Deliverer
from herald_worker.providers.carrier import CarrierProvider
from herald_worker.providers.sink import SinkProvider
from herald_worker.worker import DeliveryHandler


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Deliver until `stop` is set, then drain within `worker.drain_seconds`."""
    names = Names(settings.kafka.topic_prefix)
    producer = Producer(settings.kafka, names)
    await producer.start()
    pool = await create_pool(settings.database)
    live = CarrierProvider(
        settings.worker.provider_url, settings.worker.provider_timeout_seconds, settings.worker.provider_connections
    )
    handler = DeliveryHandler(
        Deliverer(live, SinkProvider(), settings.worker.provider_attempts),
        producer,
        pool,
        settings.worker.max_in_flight,
    )
    consumer = make_consumer(settings.kafka, names, WORKER_GROUP, MESSAGE_TOPICS)
    await consumer.start()
    loop = ConsumerLoop(consumer, handler, names, group=WORKER_GROUP, max_records=settings.worker.batch_max_records)
    task = asyncio.create_task(loop.run())
    try:
        await until_stopped(task, stop)
        await drain(loop, task, settings.worker.drain_seconds)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(consumer.stop(), 10)
        await producer.stop()
        await live.close()
        await pool.close()


def ops_app(settings: Settings) -> Litestar:
    names = Names(settings.kafka.topic_prefix)

    async def ready() -> dict[str, str]:
        missing = await missing_topics(settings.kafka, names)
        return {"kafka": "ok" if not missing else "missing topics"}

    return Litestar(route_handlers=ops_handlers(ready, cache_seconds=5.0), openapi_config=None, logging_config=None)


run = run_worker
