"""Signed status callbacks: order, signature, retries, per-tenant isolation, SSRF, rotation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar, Request, Response, post
from litestar.params import FromPath
from prometheus_client import REGISTRY

from herald import signing
from herald.domain.records import EVENT_DECODER
from herald.embedded import free_port
from herald.kafka.topics import EVENTS
from herald_cli.settings import Settings
from herald_sinks.tenant_board import TenantBoard
from tests.eventually import eventually
from tests.integration.harness import Platform, Served, read_records


class Receiver:
    """A tenant's webhook endpoint; behaviour per path name: fail the first N, or be slow."""

    def __init__(self) -> None:
        self.received: list[tuple[str, float, dict[str, str], bytes]] = []
        self.fail_first: dict[str, int] = {}
        self.sleep: dict[str, float] = {}
        self.calls: dict[str, int] = {}

        @post("/cb/{name:str}", status_code=200)
        async def receive(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[str]:
            self.calls[name] = self.calls.get(name, 0) + 1
            await asyncio.sleep(self.sleep.get(name, 0))
            if self.calls[name] <= self.fail_first.get(name, 0):
                return Response("busy", status_code=503)
            self.received.append((name, time.monotonic(), dict(request.headers), await request.body()))
            return Response("ok", status_code=200)

        self.app = Litestar([receive], openapi_config=None, logging_config=None)

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [msgspec.json.decode(body) for n, _, _, body in self.received if n == name]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r, port = Receiver(), free_port()
    served = Served(r.app, port)
    await served.start()
    yield r, f"http://127.0.0.1:{port}"
    await served.stop()


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    sinks = msgspec.structs.replace(settings.sinks, callback_timeout_seconds=1.0, callback_poll_seconds=0.05)
    running = await Platform(msgspec.structs.replace(settings, sinks=sinks)).start()
    yield running
    await running.stop()


async def _wait(predicate: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    await eventually(predicate, bool, what, seconds=seconds)


async def test_signed_callbacks_in_order(platform: Platform, receiver: tuple[Receiver, str]) -> None:
    rec, base = receiver
    tenant = await platform.tenant(callback_url=f"{base}/cb/acme")
    auth = {"authorization": f"Bearer {await platform.key(tenant['id'])}"}
    await platform.template(auth)
    sent = await platform.send(auth)
    await _wait(lambda: len(rec.bodies("acme")) >= 2, "two callbacks")
    bodies = rec.bodies("acme")
    assert [(b["message_id"], b["status"]) for b in bodies] == [
        (sent.json()["id"], "sent"),
        (sent.json()["id"], "delivered"),
    ]
    for _, _, headers, body in rec.received:
        assert signing.verify(tenant["callback_secret"], headers["herald-signature"], body)
        assert not signing.verify("whsec_wrong", headers["herald-signature"], body)


async def test_a_receipt_that_beats_its_sent_waits_for_it_on_the_topic_and_in_callbacks(
    settings: Settings, receiver: tuple[Receiver, str], pool: asyncpg.Pool
) -> None:
    # The worker's outcome producer lingers 1 s and the carrier-sim answers with a receipt after
    # 10 ms: the receipt reaches Herald about a second before the worker's `sent` reaches
    # herald.events. It is bound (and published) only once that send is recorded, so the topic and
    # the callbacks both read `sent` before `delivered`.
    worker = msgspec.structs.replace(settings.worker, outcome_linger_ms=1000)
    carrier = msgspec.structs.replace(settings.carrier_sim, receipt_delay_ms=10, receipt_batch_ms=1)
    sinks = msgspec.structs.replace(settings.sinks, callback_poll_seconds=0.05)
    running = await Platform(msgspec.structs.replace(settings, worker=worker, carrier_sim=carrier, sinks=sinks)).start()
    try:
        rec, base = receiver
        tenant = await running.tenant(callback_url=f"{base}/cb/race")
        auth = {"authorization": f"Bearer {await running.key(tenant['id'])}"}
        await running.template(auth)
        ids = [(await running.send(auth, to=f"+4474001{200 + i:05d}")).json()["id"] for i in range(5)]
        await _wait(lambda: len(rec.bodies("race")) >= 10, "ten callbacks", 20)
        # The race really happened: each receipt was recorded well within the worker's linger.
        early = await pool.fetchval(
            "SELECT count(*) FROM provider_receipts r JOIN provider_messages p USING (provider, provider_message_id)"
            " WHERE r.received_at < p.sent_at + interval '500 milliseconds' AND p.message_id = ANY($1::uuid[])",
            [uuid.UUID(m) for m in ids],
        )
        assert early == 5
        on_topic: dict[str, list[str]] = {}
        for _, value in await read_records(running.settings, [EVENTS]):
            event = EVENT_DECODER.decode(value)
            on_topic.setdefault(str(event.message_id), []).append(event.status.value)
        assert {message_id: on_topic[message_id] for message_id in ids} == {
            message_id: ["sent", "delivered"] for message_id in ids
        }
        for message_id in ids:
            statuses = [b["status"] for b in rec.bodies("race") if b["message_id"] == message_id]
            assert statuses == ["sent", "delivered"], message_id
    finally:
        await running.stop()


async def test_two_sinks_processes_call_back_each_status_once_and_in_order(
    platform: Platform, receiver: tuple[Receiver, str]
) -> None:
    # Deployments run several `herald sinks` (deploy/k8s: two replicas), each with its own
    # callback dispatcher polling the one outbox. A callback is at-least-once (a dispatcher may
    # die after the POST), but two healthy dispatchers must not both send it.
    platform.add_sinks()
    rec, base = receiver
    rec.sleep["pair"] = 0.05  # each POST takes a while, as over a network
    tenant = await platform.tenant(callback_url=f"{base}/cb/pair")
    auth = {"authorization": f"Bearer {await platform.key(tenant['id'])}"}
    await platform.template(auth)
    ids = [(await platform.send(auth, to=f"+4474001{300 + i:05d}")).json()["id"] for i in range(60)]
    await _wait(lambda: len(rec.bodies("pair")) >= 120, "two callbacks per message", 30)
    await asyncio.sleep(1.0)  # time for any second copy to arrive
    bodies = rec.bodies("pair")
    per_message = {m: [b["status"] for b in bodies if b["message_id"] == m] for m in ids}
    assert {m: s for m, s in per_message.items() if s != ["sent", "delivered"]} == {}
    assert len(bodies) == 120
    platform.check_running("with two sinks")


async def test_failing_endpoint_is_retried_until_it_accepts(platform: Platform, receiver: tuple[Receiver, str]) -> None:
    rec, base = receiver
    rec.fail_first["flaky"] = 2  # 503 twice, then 200 (backoff ~1 s, then ~2 s)
    tenant = await platform.tenant(callback_url=f"{base}/cb/flaky")
    auth = {"authorization": f"Bearer {await platform.key(tenant['id'])}"}
    await platform.template(auth)
    await platform.send(auth)
    await _wait(lambda: [b["status"] for b in rec.bodies("flaky")] == ["sent", "delivered"], "sent, delivered", 20)
    assert rec.calls["flaky"] >= 4  # two refusals, then both statuses, still in order


async def test_slow_tenant_never_delays_another(platform: Platform, receiver: tuple[Receiver, str]) -> None:
    rec, base = receiver
    rec.sleep["slow"] = 3.0  # beyond the 1 s callback timeout: every attempt times out
    slow = await platform.tenant(callback_url=f"{base}/cb/slow")
    fast = await platform.tenant(callback_url=f"{base}/cb/fast")
    slow_auth = {"authorization": f"Bearer {await platform.key(slow['id'])}"}
    fast_auth = {"authorization": f"Bearer {await platform.key(fast['id'])}"}
    await platform.template(slow_auth)
    await platform.template(fast_auth)
    ids = [(await platform.send(slow_auth, to=f"+4474001{100 + i:05d}")).json()["id"] for i in range(20)]
    for message_id in ids:  # the pipeline is warm and the slow tenant has 40 callbacks pending
        await platform.wait_status(slow_auth, message_id, {"delivered"})
    # Its endpoint is now hanging our requests.
    await _wait(lambda: rec.calls.get("slow", 0) >= 4, "four calls to the slow endpoint")
    started = time.monotonic()
    message = await platform.send(fast_auth, to="+447400100099")
    await _wait(lambda: len(rec.bodies("fast")) == 2, "the fast tenant's two callbacks", 10)
    # Both of the fast tenant's callbacks arrive in well under one slow attempt's timeout chain.
    assert time.monotonic() - started < 2.0
    assert [b["message_id"] for b in rec.bodies("fast")] == [message.json()["id"]] * 2
    assert rec.bodies("slow") == []
    assert rec.bodies("slow") == []


async def test_rotated_secret_signs_from_then_on(platform: Platform, receiver: tuple[Receiver, str]) -> None:
    rec, base = receiver
    tenant = await platform.tenant(callback_url=f"{base}/cb/rot")
    r = await platform.http.post(f"/v1/admin/tenants/{tenant['id']}/callback-secret", headers=platform.admin)
    assert r.status_code == 201
    new_secret = r.json()["callback_secret"]
    assert new_secret != tenant["callback_secret"]
    await asyncio.sleep(5.2)  # the sinks cache callback config for 5 s
    auth = {"authorization": f"Bearer {await platform.key(tenant['id'])}"}
    await platform.template(auth)
    await platform.send(auth)
    await _wait(lambda: len(rec.bodies("rot")) >= 1, "a callback")
    _, _, headers, body = rec.received[0]
    assert signing.verify(new_secret, headers["herald-signature"], body)
    assert not signing.verify(tenant["callback_secret"], headers["herald-signature"], body)


async def test_a_callback_host_that_now_resolves_inside_is_never_dialled(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Finding 4 of the security review (DNS rebinding): the URL was checked only when it was
    set. Here a tenant's host name resolves to loopback at dispatch time (as a rebinding name
    server makes it): the production policy refuses it in the resolver, and the callback is
    dead at once (`not_allowed`) instead of being retried against an internal address."""
    sinks = msgspec.structs.replace(settings.sinks, callback_timeout_seconds=1.0, callback_poll_seconds=0.05)
    production = msgspec.structs.replace(settings.callbacks, allow_private=False)
    running = await Platform(msgspec.structs.replace(settings, sinks=sinks, callbacks=production)).start()
    try:
        tenant = await running.tenant()
        # Set behind the API's check, as a name that resolved publicly then and to 127.0.0.1 now.
        await pool.execute("UPDATE tenants SET callback_url = 'https://localhost/cb' WHERE id = $1",
                           uuid.UUID(tenant["id"]))  # fmt: skip
        auth = {"authorization": f"Bearer {await running.key(tenant['id'])}"}
        await running.template(auth)
        assert (await running.send(auth)).status_code == 202
        dead = await eventually(
            lambda: pool.fetch("SELECT last_error FROM callback_outbox WHERE dead_at IS NOT NULL"),
            lambda rows: len(rows) >= 1,
            "the callback refused at dispatch",
            seconds=20,
        )
        assert {r["last_error"] for r in dead} == {"not_allowed"}
    finally:
        await running.stop()


async def test_the_backlog_names_the_tenant_whose_endpoint_fails(
    platform: Platform, receiver: tuple[Receiver, str], pool: asyncpg.Pool
) -> None:
    """Issue #31: one tenant's 503 endpoint tripled the callback failure ratio, and nothing said
    which tenant. The outbox's backlog per tenant names it, and only it."""
    rec, base = receiver
    rec.fail_first["down"] = 10_000
    down = await platform.tenant(callback_url=f"{base}/cb/down")
    fine = await platform.tenant(callback_url=f"{base}/cb/fine")
    for tenant in (down, fine):
        auth = {"authorization": f"Bearer {await platform.key(tenant['id'])}"}
        await platform.template(auth)
        for n in range(3):
            await platform.send(auth, to=f"+44751{n:06d}7")
    await _wait(lambda: len(rec.bodies("fine")) == 6, "the healthy tenant's six callbacks")
    await _wait(lambda: rec.calls.get("down", 0) >= 2, "the failing endpoint tried")
    board = TenantBoard()
    await board.report_callbacks(pool)
    retrying = _tenant_samples("herald_tenant_callbacks_retrying")
    # (Membership, not equality: the registry is the test process's, shared with earlier tests.)
    assert down["id"] in retrying
    assert fine["id"] not in retrying
    assert retrying[down["id"]] >= 1
    assert _tenant_samples("herald_tenant_callbacks_pending")[down["id"]] >= 1
    assert _tenant_samples("herald_tenant_callback_oldest_seconds")[down["id"]] > 0
    # Its endpoint recovers: once its callbacks are through, the tenant's series go.
    rec.fail_first["down"] = 0
    await _wait(lambda: len(rec.bodies("down")) == 6, "the recovered tenant's six callbacks", 40)
    await board.report_callbacks(pool)
    assert down["id"] not in _tenant_samples("herald_tenant_callbacks_retrying")


def _tenant_samples(name: str) -> dict[str, float]:
    return {
        s.labels["tenant"]: s.value
        for metric in REGISTRY.collect() for s in metric.samples if s.name == name
    }  # fmt: skip
