"""Start embedded PostgreSQL and broker (unless external ones are configured), migrate, then
run api, worker, sinks and carrier-sim as child processes, restarting any child that dies (as
an orchestrator would). SIGINT/SIGTERM stop the children (SIGTERM, then SIGKILL after a
deadline), then the broker and the database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgspec

from herald.db.migrate import migrate
from herald.db.pool import opened_pool
from herald.domain.sms_routing import ProviderKind
from herald.embedded import free_port
from herald.embedded.broker import EmbeddedBroker
from herald.embedded.postgres import EmbeddedPostgres
from herald.kafka.admin import ensure_topics
from herald.kafka.topics import Names
from herald.keyring import KeyRing
from herald_cli.settings import Settings
from herald_cli.sms import ConfigFile, ProviderFile, RouteFile
from herald_cli.sms import apply as apply_sms_config

CHILDREN = (
    "carrier-sim", "whatsapp-sim", "smsc-sim", "twilio-sim", "mail-sim", "ses-sim", "sinks", "worker", "api",
)


class Child:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.next_start = 0.0

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches only the supervisor, which stops children in order.
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "herald_cli", self.name],
                # The child stops itself if this process dies without stopping it (herald_cli.orphans).
                env={**self.env, "HERALD_SUPERVISOR_PID": str(os.getpid())},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def poll_and_restart(self) -> None:
        if self.process is None or self.process.poll() is None or time.monotonic() < self.next_start:
            return
        self.restarts += 1
        delay = min(30.0, 0.5 * 2 ** min(self.restarts, 6))
        print(
            f"herald dev: {self.name} exited with {self.process.returncode}; restarting (see {self.log_path})",
            flush=True,
        )
        self.next_start = time.monotonic() + delay
        self.start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _banner(
    api_url: str, admin_token: str, database_url: str, logs: Path, metrics: dict[str, str], whatsapp_url: str,
    sms_urls: tuple[str, str], mail_url: str,
) -> str:
    scrape = "\n".join(f"  Metrics:      {url}   ({name})" for name, url in metrics.items())
    return f"""
Herald is running.
  API:          {api_url}   (OpenAPI: {api_url}/schema/openapi.json)
  Admin token:  {admin_token}
  WhatsApp:     {whatsapp_url}   (Meta's Cloud API, played by a double: README, "WhatsApp")
  SMS:          SMPP to the SMSC double ({sms_urls[0]}/_sim), fallback {sms_urls[1]} (README, "SMS")
  Email:        SMTP to the relay double; the last mails it received: {mail_url}/ (README, "Email")
  Database:     {database_url}   (HERALD_DATABASE_URL for `herald billing ...`)
{scrape}
  Logs:         {logs}/   Stop with Ctrl-C.

Try:
  export H={api_url} ADMIN={admin_token}
  curl -s -X POST $H/v1/admin/tenants -H "Authorization: Bearer $ADMIN" \\
       -H 'content-type: application/json' -d '{{"name": "Acme Air", "tier": "standard", "verified": true}}'
  (the README walks on from there: key, template, message, status)
"""


class DevStack:
    """Embedded services plus supervised children. Used by `herald dev` and the load tests.

    `start()` returns once every child is ready (the API's /readyz, and the worker's and sinks'
    once they have joined their consumer groups); `supervise(should_stop)` restarts dead
    children until `should_stop()` is true; `stop()` stops children, broker and database.
    """

    def __init__(self, settings: Settings, children: tuple[str, ...] = CHILDREN) -> None:
        self.settings = settings
        self.child_names = children
        self.data_dir = settings.data_dir.resolve()
        self.admin_token = settings.api.admin_token or secrets.token_urlsafe(24)
        self.api_url = f"http://{settings.api.host}:{settings.api.port}"
        self.database_url = settings.database.url
        self.bootstrap = settings.kafka.bootstrap
        self.postgres: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self.children: list[Child] = []
        self.sim_url = ""
        self.whatsapp_url = ""
        self.sms_urls = (f"http://127.0.0.1:{settings.smsc_sim.port}", f"http://127.0.0.1:{settings.twilio_sim.port}")

    def start(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres", free_port())
            self.postgres.start()
            if not self.postgres.psql("postgres", "SELECT 1 FROM pg_database WHERE datname = 'herald'").strip():
                self.postgres.psql("postgres", "CREATE DATABASE herald")
            self.database_url = self.postgres.dsn("herald")
        if not self.bootstrap:
            self.broker = EmbeddedBroker(free_port(), self.data_dir / "logs" / "broker.log")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
        kafka = msgspec.structs.replace(self.settings.kafka, bootstrap=self.bootstrap)
        asyncio.run(migrate(self.database_url))
        if "smsc-sim" in self.child_names:
            asyncio.run(self._sms_routes())
        asyncio.run(ensure_topics(kafka, Names(kafka.topic_prefix)))
        # Meta's double on a known port (8091 unless HERALD_WHATSAPP_SIM_PORT): the README's
        # WhatsApp walk-through talks to it as Meta's dashboard.
        sim_port, whatsapp_port = free_port(), self.settings.whatsapp_sim.port
        inbound_mail_port = self.settings.email.inbound_port or 2526
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.whatsapp_url = f"http://127.0.0.1:{whatsapp_port}"
        env = {
            **os.environ,
            # The repository's development secrets are expected here; production refuses them.
            "HERALD_ENVIRONMENT": "development",
            "HERALD_DATABASE_URL": self.database_url,
            "HERALD_KAFKA_BOOTSTRAP": self.bootstrap,
            "HERALD_ADMIN_TOKEN": self.admin_token,
            # Development: tenants may point callbacks at localhost (production refuses: SSRF).
            "HERALD_CALLBACKS_ALLOW_PRIVATE": os.environ.get("HERALD_CALLBACKS_ALLOW_PRIVATE", "true"),
            "HERALD_API_PORT": str(self.settings.api.port),
            "HERALD_CARRIER_SIM_PORT": str(sim_port),
            "HERALD_WORKER_PROVIDER_URL": f"http://127.0.0.1:{sim_port}",
            "HERALD_CARRIER_SIM_RECEIPT_URL": f"{self.api_url}/v1/providers/carrier-sim/receipts",
            # Meta's Graph API is played by the local double (`herald whatsapp-sim`).
            "HERALD_WHATSAPP_SIM_PORT": str(whatsapp_port),
            "HERALD_WHATSAPP_GRAPH_URL": f"{self.whatsapp_url}/v21.0",
            # SMS go to the SMSC double over SMPP, with the aggregator double as fallback
            # (`_sms_routes`); its status callbacks come back to the API.
            "HERALD_SMSC_SIM_PORT": str(self.settings.smsc_sim.port),
            "HERALD_SMSC_SIM_SMPP_PORT": str(self.settings.smsc_sim.smpp_port),
            "HERALD_TWILIO_SIM_PORT": str(self.settings.twilio_sim.port),
            "HERALD_WORKER_TWILIO_STATUS_CALLBACK_URL": f"{self.api_url}/v1/providers/twilio",
            # Email goes to the relay double over SMTP; identities are verified against its DNS,
            # and one-click unsubscribe links point at this API.
            "HERALD_MAIL_SIM_PORT": str(self.settings.mail_sim.port),
            "HERALD_MAIL_SIM_SMTP_PORT": str(self.settings.mail_sim.smtp_port),
            "HERALD_MAIL_SIM_DNS_PORT": str(self.settings.mail_sim.dns_port),
            "HERALD_EMAIL_SMTP_PORT": str(self.settings.mail_sim.smtp_port),
            "HERALD_EMAIL_DNS_SERVER": f"127.0.0.1:{self.settings.mail_sim.dns_port}",
            "HERALD_EMAIL_UNSUBSCRIBE_URL": f"{self.api_url}/v1/unsubscribe",
            # Delivery reports and complaints come back by SMTP to the API's inbound port.
            "HERALD_EMAIL_INBOUND_PORT": str(inbound_mail_port),
            "HERALD_MAIL_SIM_REPORT_PORT": str(inbound_mail_port),
            # Amazon SES v2 is the double (moto behind a fault front); email uses it when
            # HERALD_EMAIL_PROVIDERS names it (`smtp,ses`: SES when the relay cannot take a mail).
            "HERALD_SES_SIM_PORT": str(self.settings.ses_sim.port),
            "HERALD_EMAIL_SES_ENDPOINT_URL": f"http://127.0.0.1:{self.settings.ses_sim.port}",
            "HERALD_EMAIL_SES_ACCESS_KEY_ID": "testing",
            "HERALD_EMAIL_SES_SECRET_ACCESS_KEY": "testing",  # the double checks no signature
            # SES's events come back through the double's SNS topic, signed with its certificate.
            "HERALD_SES_SIM_NOTIFY_URL": f"{self.api_url}/v1/providers/ses/notifications",
            "HERALD_EMAIL_SES_NOTIFICATIONS": "true",
            "HERALD_EMAIL_SES_NOTIFICATION_TOPICS": self.settings.ses_sim.topic_arn,
            "HERALD_EMAIL_SNS_TRUSTED_PREFIXES": f"http://127.0.0.1:{self.settings.ses_sim.port}/",
            "HERALD_WORKER_METRICS_PORT": str(free_port()),
            "HERALD_SINKS_METRICS_PORT": str(free_port()),
        }
        self.children = [Child(name, env, self.data_dir / "logs") for name in self.child_names]
        # What Prometheus would scrape: the API serves /metrics itself, the others on their ports.
        self.metrics_urls = {"api": f"{self.api_url}/metrics"}
        for name in ("worker", "sinks"):
            if name in self.child_names:
                self.metrics_urls[name] = f"http://127.0.0.1:{env[f'HERALD_{name.upper()}_METRICS_PORT']}/metrics"
        for child in self.children:
            child.start()
        # Ready means every child is: the API answers, and the worker and sinks have joined their
        # consumer groups (before that a newcomer's first message would read 404 for seconds).
        ready = {"api": f"{self.api_url}/readyz"}
        for name in ("worker", "sinks"):
            if name in self.child_names:
                ready[name] = f"http://127.0.0.1:{env[f'HERALD_{name.upper()}_METRICS_PORT']}/readyz"
        return all(_wait_ready(name, url, should_stop) for name, url in ready.items())

    async def _sms_routes(self) -> None:
        """Unless providers are configured already: the SMSC double as `smpp-main`, the
        aggregator double as `twilio-backup`, and every sms routed to the first, then the second."""
        smsc, twilio = self.settings.smsc_sim, self.settings.twilio_sim
        database = msgspec.structs.replace(self.settings.database, url=self.database_url)
        async with opened_pool(database) as pool:
            if await pool.fetchval("SELECT count(*) FROM sms_providers"):
                return
            await apply_sms_config(pool, KeyRing(self.settings.secrets.keys()), ConfigFile(
                providers={
                    "smpp-main": ProviderFile(kind=ProviderKind.SMPP, endpoint=f"127.0.0.1:{smsc.smpp_port}",
                                              account=smsc.system_id, secret="devpass",  # noqa: S106 - the double checks none
                                              sender="HERALD",
                                              prices={"*": 30_000}),
                    "twilio-backup": ProviderFile(kind=ProviderKind.TWILIO, endpoint=f"http://127.0.0.1:{twilio.port}",
                                                  account=twilio.account_sid, secret=twilio.auth_token,
                                                  sender="447400000099", prices={"*": 45_000}),
                },
                routes=[RouteFile(country="*", providers=["smpp-main", "twilio-backup"])],
            ))  # fmt: skip

    def supervise(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            for child in self.children:
                child.poll_and_restart()
            time.sleep(0.2)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        deadline = time.monotonic() + 25
        for child in reversed(self.children):
            child.wait_or_kill(deadline)
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def run_dev(settings: Settings) -> int:
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack = DevStack(settings)
    try:
        if stack.start(lambda: stop["now"]):
            banner = _banner(stack.api_url, stack.admin_token, stack.database_url, stack.data_dir / "logs",
                             stack.metrics_urls, stack.whatsapp_url, stack.sms_urls,
                             f"http://127.0.0.1:{settings.mail_sim.port}")  # fmt: skip
            print(banner, flush=True)
        stack.supervise(lambda: stop["now"])
        print("herald dev: stopping", flush=True)
        return 0
    finally:
        stack.stop()


def _wait_ready(name: str, url: str, should_stop: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not should_stop():
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    print(f"herald dev: {name} did not become ready at {url}; see its log in the data directory's logs/", flush=True)
    return False
