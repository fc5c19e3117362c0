"""Wiring for `herald sinks`."""

from __future__ import annotations

import asyncio
import contextlib

from litestar import Litestar

from herald.db.pool import create_pool
from herald.kafka.consumer import ConsumerLoop, drain, make_consumer
from herald.kafka.producer import Producer
from herald.kafka.topics import EVENTS, MESSAGE_TOPICS, STATUS_SINK_GROUP, Names
from herald.ops import check_postgres, ops_handlers
from herald.runtime import until_stopped
from herald.settings import Settings
from herald_sinks.status import StatusProjection
from herald_sinks.sweeper import run_sweeper


async def run_sinks(settings: Settings, stop: asyncio.Event) -> None:
    names = Names(settings.kafka.topic_prefix)
    pool = await create_pool(settings.database)
    producer = Producer(settings.kafka, names)
    await producer.start()
    sweeper = asyncio.create_task(run_sweeper(pool, producer, settings.sinks, stop))
    consumer = make_consumer(settings.kafka, names, STATUS_SINK_GROUP, (*MESSAGE_TOPICS, EVENTS))
    await consumer.start()
    loop = ConsumerLoop(consumer, StatusProjection(pool, names), names, max_records=settings.sinks.batch_max_records)
    task = asyncio.create_task(loop.run())
    try:
        await until_stopped(task, stop)
        await drain(loop, task, 20.0)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(consumer.stop(), 10)
        sweeper.cancel()
        with contextlib.suppress(BaseException):
            await sweeper
        await producer.stop()
        await pool.close()


def ops_app(settings: Settings) -> Litestar:
    state: dict[str, object] = {}

    async def ready() -> dict[str, str]:
        if "pool" not in state:
            state["pool"] = await create_pool(settings.database)
        return {"postgres": await check_postgres(state["pool"])}  # type: ignore[arg-type]

    return Litestar(route_handlers=ops_handlers(ready, cache_seconds=5.0), openapi_config=None, logging_config=None)


run = run_sinks
