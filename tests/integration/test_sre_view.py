"""The SRE's view, checked end to end (issue #31): a real Prometheus (the Debian package) scrapes
the platform `make run` starts, with `deploy/prometheus/alerts.yml` loaded, while a scripted mix
of traffic runs. After the mix every panel query of `deploy/grafana/herald.json` returns data and
no alert fires; then each fault fires its alert: a callback endpoint failing for one tenant, the
SMSC frozen (SIGSTOP), the SMSC refusing every bind, the billing table locked, a worker killed.

Time in the rules runs `SCALE` times faster: every range, `for` and age threshold is divided by
it (a five-minute window is ten seconds), so that faults fire within a test's minutes; the
promtool unit tests (tests/unit/test_observability.py) check the same rules at their real
durations. Prometheus scrapes every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from litestar import Litestar, Response, post
from litestar.params import FromPath

from herald.db.pool import opened_pool
from herald.domain.sms_routing import ProviderKind
from herald.embedded import free_port
from herald.keyring import KeyRing
from herald_cli.dev import DevStack
from herald_cli.settings import Settings
from herald_cli.sms import ConfigFile, ProviderFile, RouteFile
from herald_cli.sms import apply as apply_sms_config
from tests.integration.harness import Platform, Served
from tests.integration.processes import env_for

SCALE = 30
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
pytestmark = [
    pytest.mark.timeout(420),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian package) is not installed"),
]
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def scaled_rules(text: str, scale: int) -> str:
    """alerts.yml with time running `scale` times faster: ranges (`[5m]`), `for:` and the
    thresholds compared with a `*_seconds` gauge divided by `scale`."""

    def duration(match: re.Match[str]) -> str:
        ms = round(float(match.group(1)) * _UNITS[match.group(2)] * 1000 / scale)
        return f"{ms}ms"

    text = re.sub(r"(?<=\[)(\d+)(ms|s|m|h)(?=\])", duration, text)
    text = re.sub(r"(?<=for: )(\d+)(ms|s|m|h)\b", duration, text)
    return re.sub(r"(_seconds\)?\s*>\s*)(\d+(?:\.\d+)?)", lambda m: f"{m.group(1)}{float(m.group(2)) / scale:g}", text)


def test_scaling_rewrites_every_duration_and_age_threshold() -> None:
    rules = scaled_rules((DEPLOY / "prometheus" / "alerts.yml").read_text(), SCALE)
    assert "[10000ms]" in rules  # [5m]
    assert "for: 4000ms" in rules  # 2m
    assert "herald_consumer_busy_seconds) > 10" in rules  # 300 s
    assert "herald_billing_pending_oldest_seconds) > 120" in rules  # 3600 s
    assert not re.search(r"\[\d+[smh]\]|for: \d+[smh]\b", rules)


class Endpoints:
    """Tenants' callback endpoints; a tenant named in `failing` answers 503."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.received: dict[str, int] = {}

        @post("/cb/{name:str}", status_code=200)
        async def receive(name: FromPath[str]) -> Response[str]:
            if name in self.failing:
                return Response("unavailable", status_code=503)
            self.received[name] = self.received.get(name, 0) + 1
            return Response("ok")

        self.app = Litestar([receive], openapi_config=None, logging_config=None)


class Prometheus:
    def __init__(self, folder: Path, targets: dict[str, tuple[str, str]]) -> None:
        """`targets`: job -> (host:port, metrics path)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = folder / "alerts.yml"
        rules.write_text(scaled_rules((DEPLOY / "prometheus" / "alerts.yml").read_text(), SCALE))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [address]}]}
                for job, (address, path) in targets.items()
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=self._log,
        )  # fmt: skip
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/-/ready")).status_code == 200:
                    return
            assert self.process.poll() is None, "prometheus exited"
            await asyncio.sleep(0.2)
        raise AssertionError("prometheus not ready")

    async def query(self, expr: str) -> list[dict[str, Any]]:
        answer = (await self.http.get("/api/v1/query", params={"query": expr})).json()
        assert answer["status"] == "success", (expr, answer)
        return list(answer["data"]["result"])

    async def alerts(self, state: str = "firing") -> list[dict[str, str]]:
        answer = (await self.http.get("/api/v1/alerts")).json()
        return [a["labels"] for a in answer["data"]["alerts"] if a["state"] == state]

    async def until_firing(self, name: str, seconds: float, **labels: str) -> float:
        """Seconds until `name` fires with `labels` (an AssertionError after `seconds`)."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for alert in await self.alerts():
                if alert["alertname"] == name and labels.items() <= alert.items():
                    return time.monotonic() - started
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name} {labels} did not fire in {seconds} s; firing: {await self.alerts()}")

    async def until_quiet(self, name: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not any(a["alertname"] == name for a in await self.alerts()):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"{name} still firing after {seconds} s")

    async def stop(self) -> None:
        await self.http.aclose()
        self.process.terminate()
        self.process.wait(20)
        self._log.close()


class Traffic:
    """What the tenants send, all the time, faults or not: OTPs one at a time, marketing in
    batches (some to numbers the SMSC reports undeliverable or rejected), test-key sends, and
    some bad requests."""

    def __init__(self, platform: Platform, airline: dict[str, str], shop: dict[str, str], lab: dict[str, str]) -> None:
        self._platform, self._airline, self._shop, self._lab = platform, airline, shop, lab
        self.answers: dict[int, int] = {}

    async def run(self) -> None:
        n = 0
        while True:
            n += 1
            with contextlib.suppress(httpx.HTTPError):
                await self._round(n)
            await asyncio.sleep(0.25)

    async def _round(self, n: int) -> None:
        http = self._platform.http
        sent = await self._platform.send(self._airline, to=f"+44751{n:06d}7")
        self._count(sent)
        if n % 4 == 0:
            # …0000: UNDELIV receipt; …0001: REJECTD (the SMSC double's fates).
            to = [f"+44740{n:04d}{i:02d}7" for i in range(8)] + [f"+4478{n:05d}0000", f"+4478{n:05d}0001"]
            items = [{"to": number, "channel": "sms", "template": {"name": "promo", "language": "en"},
                      "params": {"name": "Ana"}} for number in to]  # fmt: skip
            self._count(await http.post("/v1/messages/batch", headers=self._shop, json={"messages": items}))
        if n % 2 == 0:
            self._count(await self._platform.send(self._lab, to=f"+44791{n:06d}7"))
        if n % 6 == 0:
            self._count(await self._platform.send(self._airline, to="+44 not a number"))

    def _count(self, answer: httpx.Response) -> None:
        self.answers[answer.status_code] = self.answers.get(answer.status_code, 0) + 1


async def _configure_sms(settings: Settings) -> None:
    """Every sms over SMPP to the SMSC double, with no fallback: its faults are the platform's."""
    smsc = settings.smsc_sim
    async with opened_pool(settings.database) as pool:
        await apply_sms_config(pool, KeyRing(settings.secrets.keys()), ConfigFile(
            providers={"smpp-main": ProviderFile(kind=ProviderKind.SMPP, endpoint=f"127.0.0.1:{smsc.smpp_port}",
                                                 account=smsc.system_id, secret="devpass",
                                                 sender="HERALD", prices={"*": 30_000})},
            routes=[RouteFile(country="*", providers=["smpp-main"])],
        ))  # fmt: skip


@contextlib.asynccontextmanager
async def _platform(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DevStack]:
    # The children take their configuration from the environment, as under `make run`.
    for name, value in env_for(settings).items():
        if name.startswith("HERALD_"):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("HERALD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HERALD_SINKS_CALLBACK_REPORT_SECONDS", "1")
    monkeypatch.setenv("HERALD_WORKER_SMPP_SUBMIT_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("HERALD_WORKER_SMS_HEALTH_COOLDOWN_SECONDS", "1")
    monkeypatch.setenv("HERALD_SINKS_CALLBACK_TIMEOUT_SECONDS", "1")
    await _configure_sms(settings)
    stack = DevStack(settings)
    try:
        assert await asyncio.to_thread(stack.start), "the platform did not start"
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


def _child(stack: DevStack, name: str) -> subprocess.Popen[bytes]:
    (child,) = [c for c in stack.children if c.name == name]
    assert child.process is not None
    return child.process


async def _lock_billing(pool: asyncpg.Pool, release: asyncio.Event) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE billing_records IN ACCESS EXCLUSIVE MODE")
        await release.wait()


async def _during(fault: Awaitable[None], check: Callable[[], Awaitable[float]]) -> float:
    task = asyncio.ensure_future(fault)
    try:
        return await check()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.long
async def test_panels_have_data_normal_traffic_pages_no_one_and_each_fault_fires_its_alert(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool
) -> None:
    endpoints, endpoints_port = Endpoints(), free_port()
    receiver = Served(endpoints.app, endpoints_port)
    await receiver.start()
    async with _platform(settings, monkeypatch) as stack:
        urls = {"herald-api": stack.metrics_urls["api"], "herald-worker": stack.metrics_urls["worker"],
                "herald-sinks": stack.metrics_urls["sinks"],
                "carrier-sim": f"{stack.sim_url}/v1/sim/metrics",
                "smsc-sim": f"http://127.0.0.1:{settings.smsc_sim.port}/_sim/metrics",
                "twilio-sim": f"http://127.0.0.1:{settings.twilio_sim.port}/_sim/metrics",
                "whatsapp-sim": f"http://127.0.0.1:{settings.whatsapp_sim.port}/_sim/metrics",
                "mail-sim": f"http://127.0.0.1:{settings.mail_sim.port}/_sim/metrics",
                "ses-sim": f"http://127.0.0.1:{settings.ses_sim.port}/_sim/metrics"}  # fmt: skip
        targets = {job: (re.sub(r"^http://([^/]+)/.*$", r"\1", url), "/" + url.split("/", 3)[3])
                   for job, url in urls.items()}  # fmt: skip
        folder = settings.data_dir / "prometheus"
        folder.mkdir()
        prometheus = Prometheus(folder, targets)
        api = Platform(settings, url=stack.api_url)
        traffic_task: asyncio.Task[None] | None = None
        try:
            await prometheus.ready()
            base = f"http://127.0.0.1:{endpoints_port}/cb"
            airline_id = (await api.tenant(tier="standard", callback_url=f"{base}/airline"))["id"]
            airline = {"authorization": f"Bearer {await api.key(airline_id)}"}
            await api.template(airline)
            _, shop = await api.tenant_with_key(tier="enterprise")
            await api.template(shop, name="promo", body="Hi {{name}}, 20% off today", category="marketing")
            _, lab = await api.tenant_with_key(kind="test")
            await api.template(lab)
            traffic = Traffic(api, airline, shop, lab)
            traffic_task = asyncio.create_task(traffic.run())

            # Normal traffic: every panel has data, nothing fires.
            await asyncio.sleep(30)
            assert traffic.answers.get(202, 0) > 100, traffic.answers
            assert traffic.answers.get(422, 0) > 10, traffic.answers  # the bad numbers
            dashboard = json.loads((DEPLOY / "grafana" / "herald.json").read_text())
            empty = [
                (panel["title"], target["expr"])
                for panel in dashboard["panels"] for target in panel["targets"]
                if not await prometheus.query(target["expr"])
            ]  # fmt: skip
            assert empty == [], "\n".join(map(str, empty))
            assert await prometheus.alerts() == []
            # The provider's side agrees: every send Herald counts as taken, the SMSC counts too.
            # (Scraped a second apart at most, at ~25 sends/s: within 50 of each other.)
            taken = await prometheus.query(
                'sum(herald_provider_outcomes_total{provider="smpp-main",outcome="success"})'
            )
            submitted = await prometheus.query('sum(smsc_sim_submits{kind="accepted"})')
            herald_count, smsc_count = float(taken[0]["value"][1]), float(submitted[0]["value"][1])
            assert herald_count > 100
            assert abs(smsc_count - herald_count) <= 50, (smsc_count, herald_count)
            assert (await prometheus.query('up{job=~"herald-.*"} == 0')) == []
            # Every double reports its own view of the traffic (never Herald's catalogue).
            doubles = await prometheus.query('count by (job) ({__name__=~"[a-z]+_sim_.+"})')
            assert {d["metric"]["job"] for d in doubles} == {j for j in targets if j.endswith("-sim")}
            assert await prometheus.query('{job=~".+-sim", __name__=~"herald_.+"}') == []

            # One tenant's endpoint fails (and stays failing while the SMSC is frozen).
            endpoints.failing.add("airline")
            smsc = _child(stack, "smsc-sim")
            smsc.send_signal(signal.SIGSTOP)
            try:
                stalled = await prometheus.until_firing("HeraldProviderDown", 60, provider="smpp-main")
                await prometheus.until_firing("HeraldNoDeliveries", 30)
            finally:
                smsc.send_signal(signal.SIGCONT)
            await prometheus.until_firing("HeraldTenantCallbacksFailing", 90, tenant=airline_id)
            endpoints.failing.clear()
            await prometheus.until_quiet("HeraldProviderDown", 60)

            # The SMSC refuses every bind: every attempt fails on the provider's side.
            smsc_control = f"http://127.0.0.1:{settings.smsc_sim.port}/_sim/faults"
            assert (await api.http.post(smsc_control, json={"outage": True})).status_code == 204
            try:
                refused = await prometheus.until_firing("HeraldProviderErrorRatio", 75, provider="smpp-main")
            finally:
                assert (await api.http.post(smsc_control, json={"outage": False})).status_code == 204

            # Billing blocked on a lock: the billing sink's batch waits, its lag stays put.
            release = asyncio.Event()
            locked = await _during(
                _lock_billing(pool, release),
                lambda: prometheus.until_firing("HeraldSinkStuck", 60, group="herald-sinks-billing"),
            )
            release.set()

            # A worker killed (and not restarted: no supervisor here).
            worker = _child(stack, "worker")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            down = await prometheus.until_firing("HeraldProcessDown", 30, job="herald-worker")
            print(f"fired after: stall {stalled:.0f} s, errors {refused:.0f} s, billing {locked:.0f} s,"
                  f" worker {down:.0f} s; traffic answers {traffic.answers}")  # fmt: skip

            # The logs said what happened, with the provider and why, and never a recipient or a body.
            logs = {path.name: path.read_text(errors="replace") for path in (settings.data_dir / "logs").glob("*.log")}
            assert "provider did not answer a send" in logs["worker.log"]  # the stall
            assert "provider failing sends" in logs["worker.log"]  # the refused binds
            assert "smpp-main" in logs["worker.log"]
            for name, text in logs.items():
                assert not re.search(r"4475\d{7}|4474\d{7}|Your code is|20% off", text), name
        finally:
            if traffic_task is not None:
                traffic_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await traffic_task
            await api.http.aclose()
            await prometheus.stop()
            await receiver.stop()
