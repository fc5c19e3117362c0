"""The SMPP client choice, measured: `smpp34` (the worker's) against `aiosmpplib`, submitting to
the same SMSC double (`herald_smsc_sim`, on smpp34's server) in one process, one bind each,
receipts requested and read. Prints submit_sm answered per second for each.

aiosmpplib is not a dependency of Herald; install it beside to compare:
    .venv/bin/pip install --target /tmp/aiosmpplib aiosmpplib==0.7.4
    PYTHONPATH=/tmp/aiosmpplib .venv/bin/python -m loadtests.smpp_clients --messages 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import smpp34

from herald.embedded import free_port
from herald_smsc_sim.app import Smsc
from herald_smsc_sim.settings import SmscSimSettings


async def with_smpp34(port: int, messages: int, window: int) -> float:
    client = smpp34.Client(host="127.0.0.1", port=port, system_id="herald", password="bench", window_size=window)
    smsc = await client.connect()

    async def receipts() -> None:
        while not isinstance(await smsc.next(), smpp34.Disconnected):
            pass

    reader = asyncio.create_task(receipts())
    gate = asyncio.Semaphore(window)

    async def one(n: int) -> None:
        async with gate:
            answer = await smsc.submit_sm(f"447400{n:06d}7", b"Your parcel arrives today", source_addr="HERALD",
                                          registered_delivery=1)  # fmt: skip
            assert answer.is_success

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(messages)))
    rate = messages / (time.monotonic() - started)
    await smsc.unbind()
    reader.cancel()
    return rate


async def with_aiosmpplib(port: int, messages: int) -> float | None:
    try:
        import aiosmpplib  # type: ignore[import-not-found]
        from aiosmpplib.broker import SimpleBroker  # type: ignore[import-not-found]
    except ImportError:
        return None
    answered = 0
    done = asyncio.Event()

    class Counting(aiosmpplib.AbstractHook):  # type: ignore[misc]
        async def sending(self, *_: Any) -> None: ...

        async def received(self, message: Any, *_: Any) -> None:
            nonlocal answered
            if isinstance(message, aiosmpplib.SubmitSmResp):
                answered += 1
                if answered == messages:
                    done.set()

        async def send_error(self, *_: Any) -> None: ...

    broker = SimpleBroker(maxsize=messages + 1)
    esme = aiosmpplib.ESME(smsc_host="127.0.0.1", smsc_port=port, system_id="herald", password="bench",
                           broker=broker, hook=Counting(), log_level="WARNING")  # fmt: skip
    task = asyncio.create_task(esme.start())
    await asyncio.sleep(0.5)  # bound
    started = time.monotonic()
    for n in range(messages):
        await broker.enqueue(aiosmpplib.SubmitSm(
            short_message="Your parcel arrives today", source=aiosmpplib.PhoneNumber("HERALD"),
            destination=aiosmpplib.PhoneNumber(f"447400{n:06d}7"), log_id=str(n), registered_delivery=1,
        ))  # fmt: skip
    await asyncio.wait_for(done.wait(), 300)
    rate = messages / (time.monotonic() - started)
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return rate


async def run(messages: int, window: int) -> None:
    settings = SmscSimSettings(smpp_port=free_port(), receipt_delay_ms=10)
    smsc = Smsc(settings)
    await smsc.start()
    try:
        rate = await with_smpp34(settings.smpp_port, messages, window)
        print(f"smpp34 {smpp34.__version__}: {rate:,.0f} submit_sm/s (window {window}, {messages} messages)")
        other = await with_aiosmpplib(settings.smpp_port, messages)
        if other is None:
            print("aiosmpplib: not installed (see this module's docstring)")
        else:
            print(f"aiosmpplib: {other:,.0f} submit_sm/s (no window: it writes as fast as its queue gives)")
    finally:
        await smsc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.window))


if __name__ == "__main__":
    main()
