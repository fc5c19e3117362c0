"""A provider that stops answering (issue #31): 475 messages were sent twice after a 60 s carrier
stall without any crash. Every attempt sent into the stall waited in the carrier's sockets, was
processed when it thawed, and was retried by Herald too. The worker now sends one attempt at a
time into a provider that stopped answering, so what a stall costs is bounded by the sends in
flight when it began and one probe per provider timeout."""

from __future__ import annotations

import asyncio
import math

import msgspec
import pytest
from prometheus_client import REGISTRY

from herald_cli.settings import Settings
from tests.integration.harness import Platform

IN_FLIGHT, TIMEOUT, STALL = 8, 1.0, 6.0
pytestmark = pytest.mark.timeout(150)


def _stalls() -> float:
    return REGISTRY.get_sample_value("herald_provider_stalls_total", {"provider": "carrier-sim"}) or 0.0


def _no_answers() -> float:
    labels = {"provider": "carrier-sim", "outcome": "no_answer"}
    return REGISTRY.get_sample_value("herald_provider_outcomes_total", labels) or 0.0


async def test_a_stalled_provider_gets_one_attempt_at_a_time_so_few_messages_go_twice(settings: Settings) -> None:
    worker = msgspec.structs.replace(
        settings.worker, max_in_flight=IN_FLIGHT, provider_timeout_seconds=TIMEOUT, provider_attempts=3,
        retry_delays_seconds=(1.0, 1.0, 2.0, 2.0, 4.0, 4.0),
    )  # fmt: skip
    platform = await Platform(msgspec.structs.replace(settings, worker=worker)).start()
    stalls, no_answers = _stalls(), _no_answers()
    try:
        tenant_id, auth = await platform.tenant_with_key()
        await platform.patch_tenant(tenant_id, rate_limit_per_second=500)
        await platform.template(auth)
        before = [(await platform.send(auth, to=f"+44751{n:06d}7")).json()["id"] for n in range(10)]
        # The carrier freezes; sixty more messages come in while it is frozen.
        sim = f"http://127.0.0.1:{platform.settings.carrier_sim.port}/v1/sim/stall"
        assert (await platform.http.post(sim, json={"seconds": STALL})).status_code == 204
        during = []
        for n in range(60):
            during.append((await platform.send(auth, to=f"+44740{n:06d}7")).json()["id"])
            await asyncio.sleep(STALL / 60)
        ids = before + during
        statuses = [(await platform.wait_status(auth, m, deadline_s=60))["status"] for m in ids]
        assert statuses == ["delivered"] * len(ids)
        sends = await platform.sends_settled(quiet=3.0)
        assert set(ids) <= set(sends)
        extra = sum(sends[m] - 1 for m in ids)
        # The carrier's own ledger: the sends in flight when it froze, then one probe per
        # timeout, are all it took twice (or more: a probe's own retry may be the next probe).
        bound = IN_FLIGHT + math.ceil(STALL / TIMEOUT) + 1
        print(f"extra copies: {extra} (bound {bound}); sent more than once: {sum(sends[m] > 1 for m in ids)}")
        assert 0 < extra <= bound
        assert _stalls() > stalls
        assert _no_answers() > no_answers
    finally:
        await platform.stop()
