"""What the embedded broker (Tansu, memory storage) costs, measured alone: the figures behind the
delivery benchmark's CPU breakdown (loadtests/RESULTS.md, issue #4).

Prints the broker's own CPU (psutil, its process only) for:

1. single requests in isolation: a produce of 1 and of 12 records, a commit of 12 partitions;
2. a steady flow like Herald's (~2,000 records/s produced in requests of 20 records over 12
   partitions, one consumer group fetching up to 200 at a time and committing each batch), on an
   empty topic and on topics where `--stored` records sit: once stored in small batches (~50
   records, as a busy producer with a short linger writes them) and once in large ones (1,000).

Tansu's memory storage keeps each produced batch as one object and lists all of a partition's
objects on every fetch that returns something from it: the flow's cost follows the number of
batches stored, not the number of records (`loadtests/batches.py` counts them after a bench).

    .venv/bin/python -m loadtests.broker [--stored 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from herald.embedded import free_port
from herald.embedded.broker import EmbeddedBroker

PARTITIONS = 12
VALUE = b"x" * 300  # about a sealed Herald message


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _per_call(broker: psutil.Process, call: Callable[[], Awaitable[object]], n: int) -> float:
    """The broker's CPU microseconds per call, `n` calls one after the other."""
    before = _cpu(broker)
    for _ in range(n):
        await call()
    return (_cpu(broker) - before) / n * 1e6


async def _fill(bootstrap: str, topic: str, n: int, per_batch: int) -> None:
    """`n` records, `per_batch` to a batch (one produce request carries one batch per partition)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, max_batch_size=per_batch * (len(VALUE) + 100)
    )
    await producer.start()
    try:
        chunk = per_batch * PARTITIONS
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            await asyncio.gather(*[await producer.send(topic, VALUE, partition=i % PARTITIONS) for i in range(count)])
    finally:
        await producer.stop()


async def _flow(bootstrap: str, broker: psutil.Process, topic: str, seconds: float) -> float:
    """Share of a core the broker spends on a Herald-like flow over `topic`, read from its end."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"flow-{topic}", enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=20,
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    try:
        # Catch up with what is stored first (bulk reads are cheap); the flow starts at the end.
        while await consumer.getmany(timeout_ms=1000, max_records=20_000):
            pass
        await consumer.commit()
        stop = asyncio.Event()

        async def produce() -> None:
            while not stop.is_set():
                await asyncio.gather(*[await producer.send(topic, VALUE, partition=i % PARTITIONS) for i in range(20)])
                await asyncio.sleep(0.01)

        async def consume() -> None:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=200)
                if batch:
                    await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})

        tasks = [asyncio.create_task(produce()), asyncio.create_task(consume())]
        await asyncio.sleep(2)
        before, started = _cpu(broker), time.monotonic()
        await asyncio.sleep(seconds)
        share = (_cpu(broker) - before) / (time.monotonic() - started)
        stop.set()
        await asyncio.gather(*tasks)
        return share
    finally:
        await consumer.stop()
        await producer.stop()


async def measure(bootstrap: str, broker: psutil.Process, stored: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in ("single", "empty", "small", "large")])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="single", enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        one = await _per_call(broker, lambda: producer.send_and_wait("single", VALUE, partition=0), 1000)

        async def twelve() -> None:
            await asyncio.gather(*[await producer.send("single", VALUE, partition=i) for i in range(PARTITIONS)])

        spread = await _per_call(broker, twelve, 500)
        partitions = [TopicPartition("single", i) for i in range(PARTITIONS)]
        consumer.assign(partitions)
        commit = await _per_call(broker, lambda: consumer.commit({tp: 1 for tp in partitions}), 500)
        print(f"one request alone: produce 1 record {one:.0f} µs, produce 12 records over 12 partitions "
              f"{spread:.0f} µs, commit 12 partitions {commit:.0f} µs of broker CPU")  # fmt: skip
    finally:
        await consumer.stop()
        await producer.stop()
    await _fill(bootstrap, "small", stored, 50)
    await _fill(bootstrap, "large", stored, 1000)
    empty = await _flow(bootstrap, broker, "empty", 10)
    small = await _flow(bootstrap, broker, "small", 10)
    large = await _flow(bootstrap, broker, "large", 10)
    print(f"Herald-like flow (~2,000 records/s, one group), share of a core: {empty * 100:.0f}% on an empty topic; "
          f"with {stored:,} records stored in it, {small * 100:.0f}% in batches of 50 "
          f"({stored // 50 // PARTITIONS:,} per partition), {large * 100:.0f}% in batches of 1,000 "
          f"({stored // 1000 // PARTITIONS:,} per partition)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, default=1_000_000)
    args = parser.parse_args()
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        assert broker.pid is not None
        asyncio.run(measure(broker.bootstrap, psutil.Process(broker.pid), args.stored))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
