"""Wiring for `herald sinks`."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import msgspec
from litestar import Litestar

from herald import metrics
from herald.db.pool import TRANSIENT_ERRORS, close_pool, create_pool
from herald.kafka.consumer import ConsumerLoop, make_consumer
from herald.kafka.membership import Membership
from herald.kafka.producer import Producer
from herald.kafka.topics import Names
from herald.keyring import KeyRing
from herald.ops import check_postgres, ops_handlers
from herald.parking import Parking, run_parked_report
from herald.runtime import until_stopped
from herald.whatsapp.graph import Graph
from herald_sinks.billing import run_settler
from herald_sinks.callbacks import CallbackConfigs, Dispatcher
from herald_sinks.groups import TOPICS, handlers
from herald_sinks.receipts import Binder
from herald_sinks.reputation import run_complaint_report
from herald_sinks.settings import SinksConfig
from herald_sinks.sweeper import run_sweeper
from herald_sinks.tenant_board import TenantBoard, run_callback_report
from herald_sinks.whatsapp import run_template_sweep


async def run_sinks(settings: SinksConfig, stop: asyncio.Event, membership: Membership | None = None) -> None:
    """Status projection, billing ledger and callback recording (three consumer groups, so a slow
    callback table or billing never delays status), plus the receipt binder, the receipt-deadline
    sweep, the billing settler and the callback dispatcher."""
    names = Names(settings.kafka.topic_prefix)
    pool = await create_pool(settings.database)
    producer = Producer(settings.kafka, names)
    await producer.start()
    configs = CallbackConfigs(pool)
    binder = Binder(pool, producer, settings.sinks)
    graph = Graph(settings.whatsapp.graph_url, settings.whatsapp.timeout_seconds)
    ring = KeyRing(settings.secrets.keys())
    board = TenantBoard()
    background = [
        asyncio.create_task(run_sweeper(pool, producer, settings.sinks, stop)),
        asyncio.create_task(binder.run(stop)),
        asyncio.create_task(Dispatcher(pool, settings.sinks, configs, settings.callbacks).run(stop)),
        asyncio.create_task(run_settler(pool, settings.sinks.billing_settle_seconds, stop)),
        asyncio.create_task(run_parked_report(pool, settings.sinks.parked_report_seconds, stop)),
        asyncio.create_task(run_template_sweep(pool, ring, graph, settings.whatsapp.template_sweep_seconds, stop)),
        asyncio.create_task(run_complaint_report(pool, settings.sinks.complaint_report_seconds, stop)),
        asyncio.create_task(run_callback_report(board, pool, settings.sinks.callback_report_seconds, stop)),
    ]
    parking = Parking(pool)
    # Sinks are off the send path: a longer long-poll costs their lag nothing under load and
    # spares the broker an empty fetch every 20 ms per group when idle.
    kafka = msgspec.structs.replace(settings.kafka, fetch_max_wait_ms=settings.sinks.fetch_max_wait_ms)
    consumers, loops = [], []
    membership = membership or Membership()
    groups = handlers(pool, settings, configs, binder.sends_recorded, board)
    membership.expect(groups)
    for group, handler in groups.items():
        consumer = make_consumer(kafka, names, group, TOPICS[group], membership.listener(group))
        await consumer.start()
        consumers.append(consumer)
        loops.append(
            ConsumerLoop(
                consumer, handler, names, group=group, max_records=settings.sinks.batch_max_records,
                batch_wait_seconds=settings.sinks.batch_wait_seconds,
                commit_interval_seconds=settings.sinks.commit_interval_seconds, park=parking,
                transient=TRANSIENT_ERRORS,
            )
        )  # fmt: skip
    tasks = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        await until_stopped(asyncio.gather(*tasks), stop)
        await asyncio.gather(
            *(loop.drain(task, settings.sinks.drain_seconds) for loop, task in zip(loops, tasks, strict=True))
        )
    finally:
        for task in tasks:
            task.cancel()
        for consumer in consumers:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(consumer.stop(), 10)
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.gather(*background), 15)
        await producer.stop()
        await graph.close()
        await close_pool(pool)


def ops_app(settings: SinksConfig, membership: Membership) -> Litestar:
    # The probe gets one connection of its own (not a second full pool), opened on first use.
    probe = msgspec.structs.replace(settings.database, pool_min=1, pool_max=1)
    pools: list[asyncpg.Pool] = []

    async def ready() -> dict[str, str]:
        if not pools:
            pools.append(await create_pool(probe))
        return {"postgres": await check_postgres(pools[0])}

    async def close() -> None:
        for pool in pools:
            await pool.close()

    return Litestar(
        route_handlers=ops_handlers(ready, cache_seconds=5.0, live=membership.check, role=metrics.Role.SINKS),
        on_shutdown=[close],
        openapi_config=None,
        logging_config=None,
    )  # fmt: skip


run = run_sinks
