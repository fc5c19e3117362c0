"""A pass-through TCP proxy in front of the broker that counts Kafka requests by API: the broker
requests a benchmark's messages cost, read off the wire (Tansu exports no such count).

Runs in a process of its own (its CPU is in no group of `cpu.py`, so it is not charged to Herald);
counts live in shared memory the benchmark reads at any time. The broker must advertise the
proxy's port (`EmbeddedBroker(advertised_port=...)`), or clients would bypass it after bootstrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import struct
from collections.abc import Iterator
from typing import Any

# Kafka protocol API keys (https://kafka.apache.org/protocol#protocol_api_keys) Herald's clients use.
API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    18: "ApiVersions", 19: "CreateTopics", 22: "InitProducerId", 24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit",
}  # fmt: skip
_KEYS = 80


async def _pump_requests(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Any) -> None:
    # Every request is a 4-byte big-endian size, then the frame; the frame starts with its int16 API key.
    while True:
        head = await reader.readexactly(4)
        frame = await reader.readexactly(struct.unpack(">i", head)[0])
        key = struct.unpack(">h", frame[:2])[0]
        if 0 <= key < _KEYS:
            counts[key] += 1  # one writer per counter update: the proxy's single event loop
        writer.write(head + frame)
        await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _serve(listen_port: int, broker_port: int, counts: Any) -> None:
    async def client(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        b_reader, b_writer = await asyncio.open_connection("127.0.0.1", broker_port)
        tasks = [asyncio.create_task(_pump_requests(c_reader, b_writer, counts)),
                 asyncio.create_task(_pump(b_reader, c_writer))]  # fmt: skip
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (c_writer, b_writer):
            w.close()

    server = await asyncio.start_server(client, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def _run(listen_port: int, broker_port: int, counts: Any) -> None:
    asyncio.run(_serve(listen_port, broker_port, counts))


class KafkaCounter:
    """The proxy's counts so far; `counting` runs the proxy."""

    def __init__(self, counts: Any) -> None:
        self._counts = counts

    def snapshot(self) -> dict[str, int]:
        return {API_NAMES.get(k, str(k)): int(self._counts[k]) for k in range(_KEYS) if self._counts[k]}


@contextlib.contextmanager
def counting(listen_port: int, broker_port: int) -> Iterator[KafkaCounter]:
    """The proxy on `listen_port`, forwarding to the broker on `broker_port`, until exit."""
    counts = multiprocessing.Array("q", _KEYS, lock=False)
    process = multiprocessing.Process(
        target=_run, args=(listen_port, broker_port, counts), daemon=True, name="kafka-counter"
    )
    process.start()
    try:
        yield KafkaCounter(counts)
    finally:
        process.terminate()
        process.join(5)
