"""Break things: SIGKILL a worker mid-flow, lose the broker under the API, crash the database
under the whole platform."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import msgspec
import psutil
import pytest

from herald import clock, metrics
from herald.db import claims
from herald.db.migrate import migrate
from herald.domain.models import Category
from herald.domain.records import ENCODER, MESSAGE_DECODER
from herald.embedded import free_port
from herald.embedded.broker import EmbeddedBroker
from herald.embedded.postgres import EmbeddedPostgres
from herald.ids import idempotent_id
from herald.kafka.admin import ensure_topics
from herald.kafka.producer import Record
from herald.kafka.topics import RETRY, Names, class_topic
from herald_cli.settings import Settings
from tests.eventually import at_least, eventually
from tests.integration.harness import (
    Platform,
    ledger,
    located_records,
    produce,
    read_records,
    records_on,
    wait_status_count,
)
from tests.integration.processes import env_for, spawn, stop

N = 800


async def _statuses(pool: asyncpg.Pool, tenant_id: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM messages WHERE tenant_id = $1::uuid GROUP BY status", tenant_id
    )
    return {r["status"]: r["n"] for r in rows}


def _slow_carrier(settings: Settings, latency_ms: int) -> Settings:
    """Each carrier-sim send takes `latency_ms`: a worker then has calls in flight when it is hit."""
    return msgspec.structs.replace(
        settings, carrier_sim=msgspec.structs.replace(settings.carrier_sim, latency_ms=latency_ms)
    )


def _worker_env(settings: Settings, in_flight: int) -> dict[str, str]:
    """A spawned worker's bounded window: fetches of 200, 100 waiting per class, `in_flight` calls."""
    return env_for(
        settings,
        HERALD_WORKER_BATCH_MAX_RECORDS="200",
        HERALD_WORKER_MAX_IN_FLIGHT=str(in_flight),
        HERALD_WORKER_BUFFER_PER_CLASS="100",
    )


async def _send_all(platform: Platform, auth: dict[str, str], to_prefix: str) -> list[str]:
    """N sends, 32 at a time, each to its own recipient; their ids (every one answered 202)."""
    sem = asyncio.Semaphore(32)

    async def send(i: int) -> str:
        async with sem:
            r = await platform.send(auth, to=f"{to_prefix}{i + 10:05d}")
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

    return await asyncio.gather(*(send(i) for i in range(N)))


async def _resends_bounded_and_counted(platform: Platform, counted_before: float, bound: int) -> None:
    """What the carrier accepted more than once is at most `bound` sends, and every one was counted
    by the platform (from the second provider id each re-send produced)."""
    duplicates = sum(n - 1 for n in platform.sim_sends().values())
    assert duplicates <= bound, duplicates
    counted = await eventually(
        lambda: metrics.DUPLICATE_SENDS._value.get() - counted_before,
        lambda seen: seen >= duplicates,
        f"{duplicates} duplicate sends counted",
        seconds=10,
    )
    assert counted == duplicates


class _Senders:
    """Four senders to one tenant until `stop`, every other send with an idempotency key; with
    `retry_keyed`, a keyed send answered otherwise than 202 is sent again with its key (up to 30
    times, 0.5 s apart), as the API's 503 asks. Keeps every answer's (status, code), the slowest
    answer, the ids answered 202 and the ids of the keyed messages."""

    def __init__(self, platform: Platform, auth: dict[str, str], tenant_id: str, *, retry_keyed: bool = False) -> None:
        self.answers: Counter[tuple[int, str]] = Counter()
        self.slowest = 0.0
        self.accepted: list[str] = []
        self.keyed: list[str] = []
        self._platform, self._auth, self._tenant = platform, auth, uuid.UUID(tenant_id)
        self._retry_keyed = retry_keyed
        self._sending = True
        self._tasks = [asyncio.create_task(self._send(k)) for k in range(4)]

    async def _send(self, k: int) -> None:
        i = 10
        while self._sending:
            key = f"s{k}-{i}" if i % 2 else None
            extra = {} if key is None else {"idempotency_key": key}
            for attempt in range(30 if self._retry_keyed and key is not None else 1):
                if attempt:
                    await asyncio.sleep(0.5)
                started = time.monotonic()
                r = await self._platform.send(self._auth, to=f"+447400{k}{i:05d}", **extra)
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers[(r.status_code, r.json().get("code", ""))] += 1
                if r.status_code == 202:
                    self.accepted.append(str(r.json()["id"]))
                    break
            if key is not None:
                self.keyed.append(str(idempotent_id(self._tenant, key)))
            i += 1
            await asyncio.sleep(0.02)

    def halt(self) -> None:
        self._sending = False

    async def stop(self) -> None:
        self.halt()
        await asyncio.gather(*self._tasks)


class _LimitedTenant:
    """A free-tier tenant limited to 12 unique recipients a day, for the broker-stall test: its
    sends reserve recipients in Postgres before producing."""

    RECIPIENTS = [f"+44740090{100 + i:04d}" for i in range(12)]  # not a carrier-sim outcome suffix

    def __init__(self, platform: Platform, tenant_id: str, auth: dict[str, str]) -> None:
        self._platform, self.id, self._auth = platform, tenant_id, auth
        self.ids = {str(idempotent_id(uuid.UUID(tenant_id), f"limited-{i}")) for i in range(len(self.RECIPIENTS))}

    @classmethod
    async def create(cls, platform: Platform) -> _LimitedTenant:
        tenant_id, auth = await platform.tenant_with_key(tier="free")
        await platform.template(auth)
        await platform.patch_tenant(tenant_id, daily_recipient_limit=12)
        await asyncio.sleep(platform.settings.api.auth_cache_seconds + 0.1)
        return cls(platform, tenant_id, auth)

    async def _send(self, i: int) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        r = await self._platform.send(self._auth, to=self.RECIPIENTS[i], idempotency_key=f"limited-{i}")
        return r, time.monotonic() - started

    async def sends_during_the_stall(self, other_auth: dict[str, str], other_message: str) -> None:
        """Its 12 sends at once, then another tenant's status read while they wait on the broker.

        The read needs a pool connection: it must not wait behind sends held up by the broker
        (the API's pool has 10). Each send answers 503 within the produce timeout, and its
        recipient stays counted: a retry must not count it again, and nothing may overshoot."""
        sends = [asyncio.create_task(self._send(i)) for i in range(len(self.RECIPIENTS))]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        read = await self._platform.http.get(f"/v1/messages/{other_message}", headers=other_auth)
        read_took = time.monotonic() - started
        answered = await asyncio.gather(*sends)
        assert (read.status_code, read_took < 1.5) == (200, True), (read.status_code, read_took)
        assert {(r.status_code, r.json()["code"]) for r, _ in answered} == {(503, "broker_unavailable")}
        assert max(took for _, took in answered) < 4.5, [took for _, took in answered]
        limits = (await self._platform.http.get("/v1/limits", headers=self._auth)).json()
        assert limits["recipients_used_24h"] == 12, limits

    async def retries_after_the_stall(self) -> None:
        """The same sends again, with their keys, until accepted; then a 13th recipient is refused."""
        for i in range(len(self.RECIPIENTS)):
            for _ in range(30):
                r, _took = await self._send(i)
                if r.status_code == 202:
                    break
                await asyncio.sleep(0.5)
            assert r.status_code == 202, r.text
        r = await self._platform.send(self._auth, to="+447400919999")
        assert (r.status_code, r.json()["code"]) == (429, "daily_recipient_limit")
        limits = (await self._platform.http.get("/v1/limits", headers=self._auth)).json()
        assert limits["recipients_used_24h"] == 12, limits


async def _all_delivered(pool: asyncpg.Pool, platform: Platform, tenant_id: str, n: int) -> set[str]:
    """Waits until the tenant has at least `n` messages and every one is delivered; their ids.
    If they never are, says where some of the others are stuck (status, carrier sends)."""
    try:
        await eventually(
            lambda: _statuses(pool, tenant_id), lambda seen: set(seen) == {"delivered"} and seen["delivered"] >= n,
            "every message delivered", seconds=90,
        )  # fmt: skip
    except AssertionError as exc:
        stuck = await pool.fetch(
            "SELECT id::text, status FROM messages WHERE tenant_id = $1::uuid AND status <> 'delivered' LIMIT 20",
            tenant_id,
        )
        sends = platform.sim_sends()
        some = [(r["id"], r["status"], sends.get(r["id"])) for r in stuck]
        raise AssertionError(f"{exc}; (id, status, carrier sends) of some: {some}") from None
    return {r["id"] for r in await pool.fetch("SELECT id::text FROM messages WHERE tenant_id = $1::uuid", tenant_id)}


async def _billed_and_called_back_once(pool: asyncpg.Pool, tenant_id: str, ids: set[str]) -> None:
    """One ledger row of the tenant's per message in `ids`, and one `delivered` outbox row each."""
    billed = await eventually(
        lambda: ledger(pool), lambda got: len(got) >= len(ids), "every delivery billed", seconds=30
    )  # fmt: skip
    assert sorted(str(r["message_id"]) for r in billed) == sorted(ids)
    assert {str(r["tenant_id"]) for r in billed} == {tenant_id}

    async def called_back() -> list[asyncpg.Record]:
        return list(
            await pool.fetch(
                "SELECT message_id::text AS id, count(*) AS n FROM callback_outbox"
                " WHERE tenant_id = $1::uuid AND status = 'delivered' GROUP BY message_id",
                tenant_id,
            )
        )

    recorded = await eventually(
        called_back, lambda got: len(got) >= len(ids), "a delivered callback per message", seconds=30
    )
    assert sorted(r["id"] for r in recorded) == sorted(ids)
    assert {r["n"] for r in recorded} == {1}


class _SpawnedWorkers:
    """A platform without an in-process worker, for tests that run `herald worker` processes of
    their own (to kill, stop or freeze them): `spawn` starts one with `env`, all logging to `log`;
    on exit every one still running is stopped, then the platform. `duplicates_before` is the
    duplicate-send count when it started."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.platform = Platform(settings)
        self.log = settings.data_dir / "worker.log"
        self.duplicates_before = 0.0
        self._env = env
        self._spawned: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> _SpawnedWorkers:
        await self.platform.start(worker=False)
        self.duplicates_before = metrics.DUPLICATE_SENDS._value.get()
        return self

    async def __aexit__(self, *_: object) -> None:
        stop(*self._spawned)
        await self.platform.stop()

    def spawn(self) -> subprocess.Popen[bytes]:
        process = spawn("worker", self._env, self.log)
        self._spawned.append(process)
        return process


async def test_worker_sigkill_mid_flow_loses_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    # A slower carrier keeps a few hundred messages in flight when the kill lands.
    settings = _slow_carrier(settings, 30)
    async with _SpawnedWorkers(settings, _worker_env(settings, in_flight=100)) as workers:
        platform = workers.platform
        first = workers.spawn()
        tenant_id, auth = await platform.tenant_with_key()
        await platform.template(auth)

        async def statuses() -> dict[str, int]:
            return await _statuses(pool, tenant_id)

        async def delivered() -> int:
            return (await statuses()).get("delivered", 0)

        ids = await _send_all(platform, auth, "+4474001")
        assert len(set(ids)) == N

        await at_least(delivered, N // 5, "delivered before the kill", seconds=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        done_at_kill = await statuses()
        assert done_at_kill.get("delivered", 0) < N, "the kill came too late to prove anything"

        workers.spawn()
        await eventually(
            statuses, lambda seen: seen.get("delivered", 0) == N, "all delivered after restart", seconds=90
        )

        assert set(ids) <= set(platform.sim_sends())
        # Only what the worker had in hand can be re-sent: at most the waiting buffer (100 per
        # class, overshot by one fetch of 200) plus the 100 in flight.
        await _resends_bounded_and_counted(platform, workers.duplicates_before, bound=400)


async def test_a_stalled_worker_that_resumes_after_losing_its_partitions_loses_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # A zombie: worker A stops answering (SIGSTOP: a frozen VM, a long GC pause) for twice the
    # session timeout with work in hand, so the group gives its partitions to B, which re-reads
    # what A had not committed. Then A resumes, still holding that work and its provider calls.
    # Nothing may be lost, both workers must live on and exit cleanly, and what is sent twice
    # must stay within A's window (its buffer, one fetch and its calls in flight) and be counted.
    settings = _slow_carrier(settings, 30)
    async with _SpawnedWorkers(settings, _worker_env(settings, in_flight=50)) as workers:
        platform, log = workers.platform, workers.log
        first, second = workers.spawn(), workers.spawn()
        # Paced at 100 msg/s across both workers, so that work is left when A resumes.
        tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
        await platform.patch_tenant(tenant_id, rate_limit_per_second=100)
        await platform.template(auth)
        ids = await _send_all(platform, auth, "+4474003")

        async def delivered() -> int:
            return (await _statuses(pool, tenant_id)).get("delivered", 0)

        await at_least(delivered, N // 5, "delivered before the stall", seconds=60)
        first.send_signal(signal.SIGSTOP)
        try:
            assert await delivered() < N, "the stall came too late to prove anything"
            await asyncio.sleep(2 * settings.kafka.session_timeout_ms / 1000)
        finally:
            first.send_signal(signal.SIGCONT)
        await eventually(
            lambda: _statuses(pool, tenant_id), lambda seen: seen == {"delivered": N}, "all delivered", seconds=90
        )
        assert (first.poll(), second.poll()) == (None, None), log.read_text()[-2000:]

        assert set(platform.sim_sends()) == set(ids)
        await _resends_bounded_and_counted(platform, workers.duplicates_before, bound=100 + 200 + 50)
        stop(first, second)
        assert (first.returncode, second.returncode) == (0, 0), log.read_text()[-2000:]


@pytest.mark.parametrize(
    ("latency_ms", "drain_seconds"),
    [(500, 10.0), (3000, 1.0)],
    ids=["in-flight-finish", "deadline-passes"],
)
async def test_worker_sigterm_stops_taking_work_drains_commits_and_exits_within_its_deadline(
    settings: Settings, pool: asyncpg.Pool, latency_ms: int, drain_seconds: float
) -> None:
    # A worker with 20 provider calls in flight gets SIGTERM. It must start no new send, let
    # those in flight finish (or give up on them when `drain_seconds` passes), commit what is
    # done and exit 0. The next worker then re-sends nothing that had finished: none at all when
    # every call finished in time, at most the 20 abandoned ones when the deadline passed.
    in_flight = 20
    settings = _slow_carrier(settings, latency_ms)
    worker_env = env_for(
        settings,
        HERALD_WORKER_MAX_IN_FLIGHT=str(in_flight),
        HERALD_WORKER_DRAIN_SECONDS=str(drain_seconds),
        HERALD_WORKER_PROVIDER_TIMEOUT_SECONDS="30",
    )
    async with _SpawnedWorkers(settings, worker_env) as workers:
        platform, log = workers.platform, workers.log
        first = workers.spawn()
        tenant_id, auth = await platform.tenant_with_key(tier="enterprise")
        await platform.template(auth)
        n = 100
        for i in range(n):
            r = await platform.send(auth, to=f"+4474002{i + 10:05d}")
            assert r.status_code == 202, r.text

        await at_least(lambda: len(platform.sim_sends()), 1, "the first send", seconds=60)
        # The signal goes at a moment every slot's call is at the carrier, unanswered: no slot is
        # free, so any send that reaches the carrier afterwards was started after the signal,
        # however long the worker is kept off the CPU around it (on a loaded host it may be).
        deadline = time.monotonic() + 30
        while platform.sim_calls()[1] < in_flight:
            assert time.monotonic() < deadline, f"never {in_flight} calls at the carrier at once"
            await asyncio.sleep(0.002)
        arrived_before_signal, _ = platform.sim_calls()
        stopped_at = time.monotonic()  # the in-process carrier-sim's clock too
        first.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(first.wait, drain_seconds + 15)
        exited_after = time.monotonic() - stopped_at
        assert rc == 0, log.read_text()[-2000:]
        # Draining, then committing and leaving the group: the drain's deadline plus a few seconds.
        assert exited_after <= drain_seconds + 5, exited_after
        if drain_seconds * 1000 < latency_ms:
            assert exited_after < latency_ms / 1000, f"waited {exited_after:.1f} s for calls past the deadline"
        sent_by_first = platform.sim_sends()
        assert len(sent_by_first) < n, "the worker had finished before the signal: nothing was drained"
        assert platform.sim_calls()[0] == arrived_before_signal, "a send started after the signal"
        finished_after_signal = [t - stopped_at for t, _ in platform.sim_log() if t > stopped_at]
        assert len(finished_after_signal) <= in_flight, finished_after_signal

        workers.spawn()
        await wait_status_count(pool, n, tenant_id=tenant_id, deadline_s=120)
        resent = platform.sim_resent()
        if drain_seconds * 1000 > latency_ms:
            assert resent == [], f"{len(resent)} finished sends were not committed"
        else:
            assert len(resent) <= in_flight, len(resent)


async def test_broker_outage_answers_503_never_202(settings: Settings) -> None:
    broker = EmbeddedBroker(free_port())
    broker.start()
    kafka = msgspec.structs.replace(settings.kafka, bootstrap=broker.bootstrap, request_timeout_ms=3000)
    settings = msgspec.structs.replace(settings, kafka=kafka)
    await ensure_topics(kafka, Names(kafka.topic_prefix))
    platform = await Platform(settings).start(worker=False, sinks=False, sim=False)
    try:
        _, auth = await platform.tenant_with_key()
        await platform.template(auth)
        assert (await platform.send(auth)).status_code == 202
        broker.kill()
        r = await platform.send(auth)
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "broker_unavailable"
        assert r.headers["retry-after"] == "1"
        ready = await platform.http.get("/readyz")
        assert ready.status_code == 503
    finally:
        await platform.stop()
        broker.kill()


def _signal_postgres(server: EmbeddedPostgres, sig: int) -> None:
    """`sig` to the server and every backend (SIGSTOP on the postmaster alone stops nothing)."""
    postmaster = psutil.Process(int((server.data_dir / "postmaster.pid").read_text().split()[0]))
    for process in (postmaster, *postmaster.children(recursive=True)):
        process.send_signal(sig)


def _read_only(server: EmbeddedPostgres, on: bool) -> None:
    """Every session's transactions become read-only at once (or writable again)."""
    setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    server.psql("postgres", f"ALTER SYSTEM {setting}")
    server.psql("postgres", "SELECT pg_reload_conf()")


Action = Callable[[EmbeddedPostgres], None]
DATABASE_FAILURES: dict[str, tuple[Action, Action]] = {
    "crash": (lambda server: server.stop("immediate"), lambda server: server.start()),
    "stall": (partial(_signal_postgres, sig=signal.SIGSTOP), partial(_signal_postgres, sig=signal.SIGCONT)),
    "read-only": (partial(_read_only, on=True), partial(_read_only, on=False)),
}
"""How the database fails, and how it comes back."""


async def _answers_while_the_database_fails(
    platform: Platform, auth: dict[str, str], message_id: str, failure: str
) -> None:
    if failure == "read-only":  # reads answer; a write is refused as the database being away
        read = await platform.http.get(f"/v1/messages/{message_id}", headers=auth)
        assert read.status_code == 200, read.text
        write = await platform.http.post(
            "/v1/templates", headers=auth,
            json={"name": "w", "language": "en", "category": "utility", "channel": "sms", "body": "x"},
        )  # fmt: skip
        assert (write.status_code, write.json()["code"]) == (503, "database_unavailable"), write.text
        return
    ready = await platform.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    started = time.monotonic()
    read = await platform.http.get(f"/v1/messages/{message_id}", headers=auth)
    assert time.monotonic() - started < 3.0, time.monotonic() - started
    assert (read.status_code, read.json()["code"]) == (503, "database_unavailable"), read.text
    assert read.headers["retry-after"] == "1"


@pytest.mark.parametrize("failure", list(DATABASE_FAILURES))
async def test_database_crash_stall_or_failover_under_traffic_loses_nothing_and_bills_once(
    settings: Settings, tmp_path: Path, failure: str
) -> None:
    # The platform on a database of its own, which fails for six seconds while senders keep
    # sending: it crashes (every connection cut, no clean shutdown) and restarts, or it stalls
    # (SIGSTOP: connections stay open and nothing answers, like a frozen host or a partition;
    # the API's database timeout is 1 s here). Every answer must come within twice that
    # timeout (a query's, then asyncpg's wait for its cancellation) or at once. Or it takes no
    # writes (read-only, as a primary demoted in a failover does while its connections move):
    # reads still answer, writes answer 503, and nothing is parked as if the records were bad.
    # The tenant's rate (100 msg/s) is below what it sends (~170 msg/s), so the worker has a
    # backlog to fetch, pace and claim across the outage; half the sends carry an idempotency
    # key (claimed in the database by the worker). Every send must be answered 202 or 503 (never
    # a 500); every 202 must end delivered, once in the projection, the ledger and the callback
    # outbox; no worker or sink loop may die.
    fail, recover = DATABASE_FAILURES[failure]
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    server.start()
    await migrate(server.dsn())
    settings = msgspec.structs.replace(
        settings,
        database=msgspec.structs.replace(settings.database, url=server.dsn()),
        api=msgspec.structs.replace(settings.api, database_timeout_seconds=1.0),
    )
    platform = await Platform(settings).start()
    senders: _Senders | None = None
    pool = None
    try:
        # A callback URL nobody answers: the callbacks sink records an outbox row per event
        # throughout (its dispatcher keeps retrying them; what is checked is the record).
        tenant_id, auth = await platform.tenant_with_key(
            tier="enterprise", callback_url=f"http://127.0.0.1:{free_port()}/callbacks"
        )
        await platform.patch_tenant(tenant_id, rate_limit_per_second=100)
        await platform.template(auth)
        senders = _Senders(platform, auth, tenant_id)
        pool = await asyncpg.create_pool(server.dsn(), min_size=1, max_size=2)

        async def delivered() -> int:
            assert pool is not None
            return int(await pool.fetchval("SELECT count(*) FROM messages WHERE status = 'delivered'"))

        await at_least(delivered, 200, "delivered before the crash", seconds=60)
        # The senders alone outpace the tenant's rate only on an idle host (on a loaded one the
        # worker kept up with them): three seconds of the rate at once make the backlog certain.
        senders.accepted.extend(await platform.send_batch(auth, 0, 300))
        backlog = len(senders.accepted) - await delivered()
        assert backlog > 100, f"no backlog was left at the crash to prove anything ({backlog})"
        await pool.close()
        pool = None
        failed_at = time.monotonic()
        fail(server)
        try:
            await asyncio.sleep(3)
            await _answers_while_the_database_fails(platform, auth, senders.accepted[0], failure)
            await asyncio.sleep(max(0.0, 6 - (time.monotonic() - failed_at)))
        finally:
            recover(server)
        await asyncio.sleep(3)  # sending on after the restart
        await senders.stop()
        platform.check_running("with the database")

        answers = senders.answers
        assert set(answers) <= {(202, ""), (503, "database_unavailable")}, answers
        if failure != "read-only":  # sends need no write here: the tenant has no recipient limit
            assert answers[(503, "database_unavailable")] > 0, "no send came while the database was down"
        assert senders.slowest < 3.0, senders.slowest
        pool = await asyncpg.create_pool(server.dsn(), min_size=1, max_size=2)
        assert pool is not None
        accepted = senders.accepted
        ids = await _all_delivered(pool, platform, tenant_id, len(accepted))
        assert len(set(accepted)) == len(accepted)
        assert sorted(ids) == sorted(accepted)
        await _billed_and_called_back_once(pool, tenant_id, ids)
        assert await pool.fetchval("SELECT count(*) FROM parked_records") == 0, (
            "a sink parked records it could not write"
        )
        platform.check_running("after the database came back")
    finally:
        if senders is not None:
            senders.halt()
        if pool is not None:
            await pool.close()
        await platform.stop()
        server.stop("immediate")


async def test_broker_stall_under_traffic_loses_nothing_and_idempotent_retries_send_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # The platform on a broker of its own, which stops answering (SIGSTOP: a long GC pause or a
    # network partition; every connection stays open) for longer than the API's produce timeout
    # and the consumers' session timeout, while senders keep sending, then resumes. Sends during
    # the stall must be answered 503 broker_unavailable (never 500, never a hang past the
    # timeout). Such a 503 is ambiguous: the stalled broker may append the record when it
    # resumes. The idempotent senders retry on 503 with the same key, as the API asks: each of
    # their messages must reach the carrier exactly once. Every 202 must end delivered, and
    # every message the platform holds must be delivered once in the projection, the ledger and
    # the callback outbox; re-sends of plain messages stay within the in-flight window and are
    # counted; no worker or sink loop may die.
    broker = EmbeddedBroker(free_port())
    broker.start()
    kafka = msgspec.structs.replace(settings.kafka, bootstrap=broker.bootstrap, request_timeout_ms=3000)
    settings = msgspec.structs.replace(settings, kafka=kafka)
    await ensure_topics(kafka, Names(kafka.topic_prefix))
    platform = await Platform(settings).start()
    duplicates_before = metrics.DUPLICATE_SENDS._value.get()
    senders: _Senders | None = None
    try:
        tenant_id, auth = await platform.tenant_with_key(
            tier="enterprise", callback_url=f"http://127.0.0.1:{free_port()}/callbacks"
        )
        await platform.template(auth)
        limited = await _LimitedTenant.create(platform)
        senders = _Senders(platform, auth, tenant_id, retry_keyed=True)

        async def delivered() -> int:
            return (await _statuses(pool, tenant_id)).get("delivered", 0)

        await at_least(delivered, 200, "delivered before the stall", seconds=60)
        assert broker.pid is not None
        stalled_at = time.monotonic()
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(1)
            await limited.sends_during_the_stall(auth, senders.accepted[0])
            await asyncio.sleep(8 - (time.monotonic() - stalled_at))
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        await asyncio.sleep(4)  # sending on after the broker resumed
        await senders.stop()
        platform.check_running("with the broker")
        await limited.retries_after_the_stall()

        answers, accepted, keyed = senders.answers, senders.accepted, senders.keyed
        assert set(answers) <= {(202, ""), (503, "broker_unavailable")}, answers
        assert answers[(503, "broker_unavailable")] > 0, "no send came while the broker was stalled"
        assert set(keyed) <= set(accepted), "a keyed send was never accepted"
        unkeyed_refused = answers[(503, "broker_unavailable")]
        # Answered within the produce timeout (3 s), however long the stall: a send the broker
        # has not acknowledged by then is a 503, not a request hanging for the stall's length.
        assert senders.slowest < 4.5, senders.slowest

        rows = await _all_delivered(pool, platform, tenant_id, len(set(accepted)))
        assert set(accepted) <= rows
        # A message the platform holds that was never answered 202 is one a stalled broker
        # appended after the API had answered 503 (an unkeyed send; keyed ones were retried).
        assert len(rows - set(accepted)) <= unkeyed_refused
        await _all_delivered(pool, platform, limited.id, len(limited.ids))
        sends = platform.sim_sends()
        assert set(sends) == rows | limited.ids, "a message was sent that the platform does not hold, or not sent"
        assert [i for i in keyed + sorted(limited.ids) if sends[i] != 1] == [], (
            "a keyed message reached the carrier more than once"
        )
        await _resends_bounded_and_counted(platform, duplicates_before, bound=2 * settings.worker.max_in_flight)
        await _billed_and_called_back_once(pool, tenant_id, rows)
        platform.check_running("after the broker resumed")
    finally:
        if senders is not None:
            senders.halt()
        await platform.stop()
        broker.kill()


async def test_worker_sigkill_while_deferring_a_tenant_backlog_sends_nothing_deferred_twice(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # A tenant paced at 20 msg/s sends a burst of 240 far above it: the worker keeps 5 waiting and
    # defers the rest to herald.retry, each for its turn. It is SIGKILLed mid-burst, with a
    # commit interval long enough that nothing it deferred is committed yet, and restarted: it
    # reads those records again. It must not defer them (and so send them) a second time. What
    # it had sent may be sent again (nothing was committed), and every such re-send is counted.
    burst = 240
    worker_env = _worker_env(settings, in_flight=10) | {
        "HERALD_WORKER_TENANT_BUFFER_SECONDS": "0.05",
        "HERALD_WORKER_TENANT_BUFFER_MIN": "5",
        "HERALD_WORKER_COMMIT_INTERVAL_SECONDS": "60",
        "HERALD_WORKER_RECIPIENT_GAP_SECONDS": "0.5",  # a second copy goes out soon after the first
    }
    async with _SpawnedWorkers(settings, worker_env) as workers:
        platform = workers.platform
        first = workers.spawn()
        tenant_id, auth = await platform.tenant_with_key()
        await platform.template(auth)
        # (20, not 80 or 40: on a loaded 2-core CI runner the API took the burst of single sends
        # slowly enough for the worker to keep up with most of it at 80, and once at 40, and
        # fewer than a quarter were deferred.)
        await platform.patch_tenant(tenant_id, rate_limit_per_second=20)
        warm_up = await platform.send(auth, to="+447400399999")
        await platform.wait_status(auth, warm_up.json()["id"], {"delivered"})  # the worker is in its group
        ids: list[str] = [str(warm_up.json()["id"])]

        async def send(k: int) -> None:
            for i in range(k, burst, 4):
                r = await platform.send(auth, to=f"+4474003{i + 10:05d}")
                assert r.status_code == 202, r.text
                ids.append(str(r.json()["id"]))

        sending = asyncio.gather(*(send(k) for k in range(4)))
        await at_least(lambda: records_on(settings, RETRY), burst // 4, "a quarter of the burst deferred", seconds=60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # What the killed worker deferred: herald.retry holds nothing else yet.
        deferred = {str(MESSAGE_DECODER.decode(value).id) for _, value in await read_records(settings, [RETRY])}
        assert len(deferred) > burst // 8  # messages (a record deferred again is one more record)
        workers.spawn()
        await sending
        assert len(set(ids)) == burst + 1
        await _all_delivered(pool, platform, tenant_id, burst + 1)
        sends = await platform.sends_settled()
        assert set(ids) <= set(sends)
        # Some still may be: those the killed worker had sent (from their copies) before their
        # handling was noted: the 10 in flight and the sent ones whose outcome the broker had not
        # yet acknowledged (on a loaded 2-core runner, up to two windows more: 22 seen in CI).
        # Never a deferral itself: its note precedes its copy (the old code sent every deferred
        # message twice, and until notes came first, one fetch's).
        twice = [i for i in deferred if sends[i] > 1]
        assert len(twice) <= 3 * 10, f"{len(twice)} of {len(deferred)} deferred messages sent twice"
        await _resends_bounded_and_counted(platform, workers.duplicates_before, bound=burst)


async def test_deferrals_a_killed_worker_left_half_done_are_each_sent_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # What a worker killed while deferring can leave behind, built by hand (a kill cannot be
    # aimed at a window of milliseconds), for the worker that takes the partitions over:
    # A's deferral noted and its copy never published (killed between the note and the produce),
    # B's noted and its copy on herald.retry (killed after the broker's ack, before the commit),
    # C's noted and its copy on herald.retry twice (a successor killed after publishing it again).
    # Each must be sent exactly once, from its noted copy: not deferred anew, not sent from its
    # class record, not once per copy.
    platform = await Platform(settings).start(worker=False)
    try:
        _, auth = await platform.tenant_with_key()
        await platform.template(auth)
        ids = []
        for recipient in ("+447400550011", "+447400550012", "+447400550013"):
            r = await platform.send(auth, to=recipient)
            assert r.status_code == 202, r.text
            ids.append(uuid.UUID(r.json()["id"]))
        a, b, c = ids
        read = {
            MESSAGE_DECODER.decode(value).id: (tp, offset, key, value)
            for tp, offset, key, value in await located_records(settings, [class_topic(Category.AUTHENTICATION)])
        }
        assert set(read) == set(ids)
        copy_at = clock.now_ms() + 1000
        notes, copies = [], {}
        for mid, (tp, offset, key, value) in read.items():
            notes.append(claims.Deferral(claims.Source(mid, tp.topic, tp.partition, offset), copy_at))
            copy = msgspec.structs.replace(MESSAGE_DECODER.decode(value), not_before_ms=copy_at)
            copies[mid] = Record(RETRY, key, ENCODER.encode(copy))
        await claims.note_deferred(pool, notes)
        await produce(settings, [copies[b], copies[c], copies[c]])

        platform.add_worker()
        for mid in ids:
            await platform.wait_status(auth, str(mid), {"delivered"})
        sends = await platform.sends_settled()
        assert {mid: sends.get(str(mid)) for mid in ids} == dict.fromkeys(ids, 1)
        on_retry = [MESSAGE_DECODER.decode(value) for _, value in await read_records(settings, [RETRY])]
        assert {m.not_before_ms for m in on_retry if m.id == a} == {copy_at}, "A's copy is not the noted one"
        platform.check_running("after the copies")
    finally:
        await platform.stop()


pytestmark = pytest.mark.timeout(240)
