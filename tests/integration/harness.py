"""Runs the real processes' code in the test's event loop, over real sockets.

The API and carrier-sim are served by uvicorn on free loopback ports; the worker and the
status sink run as tasks with their own stop events, exactly as `herald worker` / `herald
sinks` run them. Helpers create tenants, keys and templates through the public API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from litestar import Litestar

from herald import metrics
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import Names, contracts
from herald_api.app import create_app
from herald_api.http_server import uvicorn_options
from herald_carrier_sim.app import create_app as create_sim
from herald_cli.settings import Settings
from herald_mail_sim.app import create_app as create_mail_sim
from herald_ses_sim.app import create_app as create_ses_sim
from herald_sinks.main import run_sinks
from herald_smsc_sim.app import create_app as create_smsc_sim
from herald_twilio_sim.app import create_app as create_twilio_sim
from herald_whatsapp_sim.app import create_app as create_whatsapp_sim
from herald_worker.main import run_worker
from tests.eventually import at_least, eventually

FINAL = {"delivered", "failed", "expired", "read", "cancelled"}


class Served:
    def __init__(self, app: Litestar, port: int, **options: Any) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", log_config=None, **options
            )
        )
        self.task: asyncio.Task[None] | None = None

    async def _serve(self) -> None:
        try:
            await self.server.serve()
        except SystemExit as exc:
            # uvicorn exits when it cannot bind or its app does not start: an error of this test,
            # not a SystemExit through the event loop, which would stop every later test.
            raise RuntimeError(f"a test server could not start (port {self.server.config.port})") from exc

    async def start(self) -> None:
        task = self.task = asyncio.create_task(self._serve())

        def started() -> bool:
            if task.done():
                task.result()  # its startup error, rather than a timeout
            return bool(self.server.started)

        await eventually(started, bool, "the server started", seconds=10, every=0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, 15)


class Loop:
    """A worker or sink main coroutine with its own stop event."""

    def __init__(self, settings: Settings, main: Any) -> None:
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(main(settings, self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)


class Platform:
    def __init__(self, settings: Settings, url: str | None = None) -> None:
        """`url` points the helpers at an API served elsewhere (e.g. a spawned `herald api`)."""
        self.settings = settings
        self.url = url or f"http://127.0.0.1:{settings.api.port}"
        self.admin = {"authorization": f"Bearer {settings.api.admin_token}"}
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)
        self._sim: Litestar | None = None
        self._servers: list[Served] = []
        self._loops: list[Loop] = []

    async def start(
        self, *, worker: bool = True, sinks: bool = True, sim: bool = True, email: bool = False
    ) -> Platform:
        """`email`: the relay and SES doubles too (moto's server takes half a second to stop, which
        every other test would pay)."""
        if sim:
            self._sim = create_sim(self.settings.carrier_sim, self.settings.provider)
            self._servers.append(Served(self._sim, self.settings.carrier_sim.port))
            self._servers.append(
                Served(create_whatsapp_sim(self.settings.whatsapp_sim), self.settings.whatsapp_sim.port)
            )
            self._servers.append(Served(create_smsc_sim(self.settings.smsc_sim), self.settings.smsc_sim.port))
            self._servers.append(Served(create_twilio_sim(self.settings.twilio_sim), self.settings.twilio_sim.port))
        if sim and email:
            self._servers.append(Served(create_mail_sim(self.settings.mail_sim), self.settings.mail_sim.port))
            self._servers.append(Served(create_ses_sim(self.settings.ses_sim), self.settings.ses_sim.port))
        self._servers.append(
            Served(create_app(self.settings), self.settings.api.port,
                   **uvicorn_options(self.settings.api, self.settings.campaigns))
        )
        for served in self._servers:
            await served.start()
        if sinks:
            self._loops.append(Loop(self.settings, run_sinks))
        if worker:
            self._loops.append(Loop(self.settings, run_worker))
        return self

    def sim_sends(self) -> dict[str, int]:
        """Accepted carrier sends per Herald message id (the in-process carrier-sim's ledger)."""
        assert self._sim is not None, "started without the carrier-sim"
        return dict(self._sim.state.sends)

    async def sends_settled(self, quiet: float = 2.0) -> dict[str, int]:
        """The carrier-sim's sends per message once none has come for `quiet` seconds (a message's
        second copy may follow its delivery)."""
        seen, still_since = self.sim_sends(), time.monotonic()
        while time.monotonic() - still_since < quiet:
            await asyncio.sleep(0.25)
            if (now := self.sim_sends()) != seen:
                seen, still_since = now, time.monotonic()
        return seen

    def sim_resent(self) -> list[str]:
        """Ids of the messages the in-process carrier-sim accepted more than once."""
        return [message_id for message_id, count in self.sim_sends().items() if count > 1]

    def sim_calls(self) -> tuple[int, int]:
        """(sends that reached the in-process carrier-sim, those of them not yet answered)."""
        assert self._sim is not None, "started without the carrier-sim"
        return self._sim.state.calls["arrived"], self._sim.state.calls["unanswered"]

    def sim_log(self) -> list[tuple[float, str]]:
        """(monotonic time, tenant id) of every send the in-process carrier-sim accepted."""
        assert self._sim is not None, "started without the carrier-sim"
        return list(self._sim.state.log_sends)

    def sim_outage_refusals(self) -> int:
        """Sends the in-process carrier-sim refused with 503 during outages."""
        assert self._sim is not None, "started without the carrier-sim"
        return int(self._sim.state.answers["outage"])

    def sim_throttle_refusals(self) -> int:
        """Sends the in-process carrier-sim refused with 429 `throttled` (its throughput cap)."""
        assert self._sim is not None, "started without the carrier-sim"
        return int(self._sim.state.answers["throttled"])

    def check_running(self, when: str) -> None:
        """Every worker and sink loop this platform started still runs; else the first that
        ended raises what ended it (or an AssertionError naming `when`)."""
        for loop in self._loops:
            if loop.task.done():
                loop.task.result()
                raise AssertionError(f"{loop.task.get_coro()!r} ended {when}")

    def add_worker(self) -> Loop:
        loop = Loop(self.settings, run_worker)
        self._loops.append(loop)
        return loop

    def add_sinks(self) -> Loop:
        """A second `herald sinks` (its consumer groups shared, its callback dispatcher its own)."""
        loop = Loop(self.settings, run_sinks)
        self._loops.append(loop)
        return loop

    async def stop(self) -> None:
        for loop in self._loops:
            await loop.stop()
        for served in reversed(self._servers):
            await served.stop()
        await self.http.aclose()
        for client in ("_meta", "_smsc", "_aggregator"):
            if hasattr(self, client):
                await getattr(self, client).aclose()

    # --- SMS through the SMSC (SMPP) and the HTTP aggregator doubles ----------------------------
    @property
    def smsc(self) -> httpx.AsyncClient:
        """The SMSC double's `/_sim` controls."""
        if not hasattr(self, "_smsc"):
            self._smsc = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.settings.smsc_sim.port}", timeout=10)
        return self._smsc

    @property
    def aggregator(self) -> httpx.AsyncClient:
        """The Twilio-format aggregator double's `/_sim` controls."""
        if not hasattr(self, "_aggregator"):
            self._aggregator = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.settings.twilio_sim.port}",
                                                 timeout=10)  # fmt: skip
        return self._aggregator

    async def sms_providers(self, *, smpp_rate: int = 0, twilio_rate: int = 0, binds: int = 1,
                            window: int = 10) -> None:  # fmt: skip
        """Register the SMSC double as `smpp-main` and the aggregator double as `twilio-backup`."""
        smsc, twilio = self.settings.smsc_sim, self.settings.twilio_sim
        for name, body in {
            "smpp-main": {"kind": "smpp", "endpoint": f"127.0.0.1:{smsc.smpp_port}", "account": smsc.system_id,
                          "secret": "smpp-pw", "sender": "HERALD", "rate_per_second": smpp_rate,
                          "binds": binds, "window": window, "prices": {"*": 30_000}},
            "twilio-backup": {"kind": "twilio", "endpoint": f"http://127.0.0.1:{twilio.port}",
                              "account": twilio.account_sid, "secret": twilio.auth_token, "sender": "447400000099",
                              "rate_per_second": twilio_rate, "prices": {"*": 45_000}},
        }.items():
            r = await self.http.put(f"/v1/admin/providers/{name}", headers=self.admin, json=body)
            assert r.status_code in (200, 201), r.text

    async def sms_route(self, providers: list[str], country: str = "*", strategy: str = "ordered",
                        binds: int = 1) -> None:  # fmt: skip
        """Set the route and wait until the worker holds the SMSC's binds (when it routes there)."""
        r = await self.http.put("/v1/admin/routes", headers=self.admin,
                                json={"country": country, "providers": providers, "strategy": strategy})  # fmt: skip
        assert r.status_code == 200, r.text
        version = await self._sms_config_version()
        await at_least(lambda: int(metrics.SMS_CONFIG_VERSION._value.get()), version, "the route applied", seconds=10)
        if "smpp-main" in providers:
            await at_least(lambda: self._smsc_sessions(), binds, "SMPP binds", seconds=10)

    async def _sms_config_version(self) -> int:
        conn = await asyncpg.connect(self.settings.database.url)
        try:
            return int(await conn.fetchval("SELECT version FROM sms_config"))
        finally:
            await conn.close()

    async def _smsc_sessions(self) -> int:
        return int((await self.smsc.get("/_sim/sent")).json()["sessions"])

    # --- WhatsApp, with Meta played by the double ----------------------------------------------
    @property
    def meta(self) -> httpx.AsyncClient:
        """The WhatsApp double (its Graph API and its `/_sim` dashboard)."""
        if not hasattr(self, "_meta"):
            self._meta = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.settings.whatsapp_sim.port}", timeout=10)
        return self._meta

    async def whatsapp_account(self, auth: dict[str, str], *, numbers: int = 1, throughput: int | None = None,
                               subscribe: bool = True) -> dict[str, Any]:  # fmt: skip
        """A business account made at "Meta", connected to the tenant, its webhook subscribed
        (the order a tenant follows: Herald must know the verify token before Meta checks it)."""
        made = await self.meta.post("/_sim/accounts", json={"numbers": numbers, "throughput": throughput})
        assert made.status_code == 201, made.text
        account = dict(made.json())
        account["verify_token"] = "verify-" + account["waba_id"]
        connected = await self.http.put("/v1/whatsapp/account", headers=auth, json={
            "waba_id": account["waba_id"], "display_name": "Acme", "access_token": account["access_token"],
            "app_secret": account["app_secret"], "verify_token": account["verify_token"],
            "phone_numbers": [{"id": n["id"], "throughput": throughput or 80} for n in account["phone_numbers"]],
        })  # fmt: skip
        assert connected.status_code == 200, connected.text
        if subscribe:
            webhook = {"url": f"{self.url}/v1/providers/whatsapp/webhook", "verify_token": account["verify_token"]}
            hook = await self.meta.post(f"/_sim/accounts/{account['waba_id']}/webhook", json=webhook)
            assert hook.status_code == 200, hook.text
        return account

    async def whatsapp_template(self, auth: dict[str, str], name: str = "flight_update",
                                body: str = "Flight {{flight}} now leaves at {{time}}", category: str = "utility",
                                language: str = "en_US", approved: bool = True) -> dict[str, Any]:  # fmt: skip
        """A whatsapp template submitted to Meta; with `approved`, once Meta's approval reached Herald."""
        examples = {n: "X" for n in ("flight", "time", "code", "name", "pct") if "{{" + n + "}}" in body}
        r = await self.http.post("/v1/templates", headers=auth, json={
            "name": name, "language": language, "category": category, "channel": "whatsapp", "body": body,
            "whatsapp": {"examples": examples}})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending"
        if not approved:
            return dict(r.json())

        async def current() -> dict[str, Any]:
            got = await self.http.get(f"/v1/templates/{name}/{language}", headers=auth)
            return dict(got.json())

        return await eventually(current, lambda t: t["status"] != "pending", "Meta's review reached Herald", seconds=10)

    # --- helpers over the public API --------------------------------------------------------
    async def tenant(self, tier: str = "standard", verified: bool = True, **extra: Any) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/admin/tenants", headers=self.admin, json={"name": "Acme", "tier": tier, "verified": verified, **extra}
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def patch_tenant(self, tenant_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH /v1/admin/tenants/{id} as set-up: the change must be taken (the API's auth cache
        may serve the old tenant for `auth_cache_seconds`)."""
        r = await self.http.patch(f"/v1/admin/tenants/{tenant_id}", headers=self.admin, json=fields)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def key(self, tenant_id: str, kind: str = "live") -> str:
        r = await self.http.post(f"/v1/admin/tenants/{tenant_id}/keys", headers=self.admin, json={"kind": kind})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    async def tenant_with_key(self, kind: str = "live", **tenant: Any) -> tuple[str, dict[str, str]]:
        t = await self.tenant(**tenant)
        return t["id"], {"authorization": f"Bearer {await self.key(t['id'], kind)}"}

    async def template(
        self,
        auth: dict[str, str],
        name: str = "otp",
        body: str = "Your code is {{code}}",
        category: str = "authentication",
        channel: str = "sms",
    ) -> dict[str, Any]:
        r = await self.http.post(
            "/v1/templates",
            headers=auth,
            json={"name": name, "language": "en", "category": category, "channel": channel, "body": body},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def send_batch(
        self, auth: dict[str, str], start: int, n: int, *, idempotent: bool = False, **fields: Any
    ) -> list[str]:
        """Messages `start`..`start + n - 1` to numbers of their own, in batches of 1,000, every one
        accepted: their ids. `idempotent`: each with the key `order-<i>`."""
        ids: list[str] = []
        for first in range(start, start + n, 1000):
            messages = [
                # ...99: clear of carrier-sim's scripted suffixes (0000-0005, 0009).
                {"to": f"+4474{i:06d}99", "channel": "sms", "template": {"name": "otp", "language": "en"},
                 "params": {"code": "1"}, **({"idempotency_key": f"order-{i}"} if idempotent else {}), **fields}
                for i in range(first, min(first + 1000, start + n))
            ]  # fmt: skip
            r = await self.http.post("/v1/messages/batch", headers=auth, json={"messages": messages})
            assert r.status_code == 202, r.text
            assert r.json()["rejected"] == 0, r.text
            ids += [item["id"] for item in r.json()["results"]]
        return ids

    async def send(self, auth: dict[str, str], to: str = "+447400123456", **fields: Any) -> httpx.Response:
        body = {
            "to": to,
            "channel": "sms",
            "template": {"name": "otp", "language": "en"},
            "params": {"code": "123456"},
            **fields,
        }
        return await self.http.post("/v1/messages", headers=auth, json=body)

    async def wait_status(
        self, auth: dict[str, str], message_id: str, statuses: set[str] = FINAL, deadline_s: float = 20.0
    ) -> dict[str, Any]:
        return await self._wait_message(
            auth, message_id, lambda m: m["status"] in statuses, f"did not reach {statuses}", deadline_s
        )

    async def wait_history(
        self, auth: dict[str, str], message_id: str, history: list[str], deadline_s: float = 20.0
    ) -> dict[str, Any]:
        """The message once its events read `history`, in order (the status can be final a
        moment before the history is complete: the events of a message are applied as they
        arrive, and a worker's own `delivered` travels with its `sent`)."""
        return await self._wait_message(
            auth, message_id, lambda m: [e["status"] for e in m["events"]] == history, f"history is not {history}",
            deadline_s,
        )  # fmt: skip

    async def _wait_message(
        self,
        auth: dict[str, str],
        message_id: str,
        done: Callable[[dict[str, Any]], bool],
        what: str,
        deadline_s: float,
    ) -> dict[str, Any]:
        """GET the message until `done(message)`; an AssertionError with the last one seen if not."""

        async def probe() -> Any:
            r = await self.http.get(f"/v1/messages/{message_id}", headers=auth)
            return r.json() if r.status_code == 200 else None

        found = await eventually(
            probe, lambda m: m is not None and done(m), f"message {message_id} {what}", seconds=deadline_s
        )
        return dict(found)


async def count_status(pool: asyncpg.Pool, status: str, tenant_id: str | None = None) -> int:
    """Messages the status projection shows in `status` (of one tenant, if given)."""
    n: int = await pool.fetchval(
        "SELECT count(*) FROM messages WHERE status = $1 AND ($2::uuid IS NULL OR tenant_id = $2::uuid)",
        status, tenant_id,
    )  # fmt: skip
    return n


async def wait_status_count(
    pool: asyncpg.Pool, n: int, status: str = "delivered", tenant_id: str | None = None, deadline_s: float = 30.0
) -> None:
    """Until the projection shows at least `n` messages in `status`."""
    await at_least(lambda: count_status(pool, status, tenant_id), n, f"messages {status}", seconds=deadline_s)


async def produce(settings: Settings, records: list[Record]) -> None:
    """Produce records to the test's topics as a Herald process would (acknowledged)."""
    producer = Producer(settings.kafka, Names(settings.kafka.topic_prefix))
    await producer.start()
    try:
        await producer.send_many(records)
    finally:
        await producer.stop()


def _partitions(settings: Settings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of those contract topics, under the settings' topic prefix."""
    names = Names(settings.kafka.topic_prefix)
    partitions = {c.name: c.partitions for c in contracts()}
    return [TopicPartition(names.topic(t), p) for t in topics for p in range(partitions[t])]


async def read_records(settings: Settings, topics: list[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) of every record on those contract topics, read from the beginning."""
    return [(key, value) for _, _, key, value in await located_records(settings, topics)]


async def located_records(settings: Settings, topics: list[str]) -> list[tuple[TopicPartition, int, bytes, bytes]]:
    """(partition, offset, key, value) of every record on those contract topics, from the beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    consumer.assign(_partitions(settings, topics))
    await consumer.start()
    try:
        found: list[tuple[TopicPartition, int, bytes, bytes]] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            found += [(tp, r.offset, r.key or b"", r.value or b"") for tp, records in batch.items() for r in records]
        return found
    finally:
        await consumer.stop()


async def records_on(settings: Settings, topic: str) -> int:
    """How many records the contract topic holds (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(_partitions(settings, [topic]))
        return sum(ends.values())
    finally:
        await consumer.stop()


async def ledger(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """The billing ledger, by message id."""
    rows = await pool.fetch(
        "SELECT message_id, tenant_id, channel, category, country, rate_card_version, unit_price_micros,"
        " currency, billed_at FROM billing_records ORDER BY message_id"
    )
    return [dict(r) for r in rows]


async def wait_ledger_rows(pool: asyncpg.Pool, n: int, deadline_s: float = 30.0) -> list[dict[str, Any]]:
    """Until the ledger holds at least `n` rows; returns them."""
    return await eventually(lambda: ledger(pool), lambda rows: len(rows) >= n, f"{n} ledger rows", seconds=deadline_s)
