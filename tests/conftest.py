"""Session fixtures: one private PostgreSQL and one private broker for the whole run.

Isolation per test: each test gets its own database (copied from a migrated template database,
~50 ms) and its own topic/consumer-group prefix on the shared broker.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from herald.db.migrate import migrate
from herald.embedded import free_port, share_ports
from herald.embedded.broker import EmbeddedBroker
from herald.embedded.postgres import EmbeddedPostgres
from herald.kafka.admin import ensure_topics
from herald.kafka.topics import Names
from herald.settings import CallbackSettings, DatabaseSettings, EmailSettings, KafkaSettings, WhatsAppSettings
from herald_api.settings import ApiSettings
from herald_carrier_sim.settings import CarrierSimSettings
from herald_cli.settings import Settings
from herald_mail_sim.settings import MailSimSettings
from herald_ses_sim.settings import SesSimSettings
from herald_sinks.settings import SinkSettings
from herald_smsc_sim.settings import SmscSimSettings
from herald_twilio_sim.settings import TwilioSimSettings
from herald_whatsapp_sim.settings import WhatsAppSimSettings
from herald_worker.settings import WorkerSettings

TEMPLATE_DB = "herald_template"

if "PYTEST_XDIST_WORKER" in os.environ:
    # Parallel workers (`pytest -n`) each run their own PostgreSQL and broker and choose their
    # servers' ports from their own share of the range, so two of them never name the same one.
    share_ports(int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port())
    server.start()
    server.psql("postgres", f"CREATE DATABASE {TEMPLATE_DB}")
    import asyncio

    asyncio.run(migrate(server.dsn(TEMPLATE_DB)))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(free_port(), tmp_path_factory.mktemp("broker") / "broker.log")
    server.start()
    yield server
    server.kill()  # memory storage: nothing to flush, and SIGTERM takes seconds


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await admin.close()
    yield postgres.dsn(name)
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def settings(database_url: str, broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    api_port, sim_port, whatsapp_port = free_port(), free_port(), free_port()
    smsc_port, smpp_port, twilio_port = free_port(), free_port(), free_port()
    mail_port, smtp_port, dns_port = free_port(), free_port(), free_port(socket.SOCK_DGRAM)
    inbound_mail_port, ses_port = free_port(), free_port()
    result = Settings(
        environment="development",
        data_dir=tmp_path,
        database=DatabaseSettings(url=database_url, pool_max=10),
        kafka=KafkaSettings(
            bootstrap=broker.bootstrap,
            topic_prefix=prefix,
            session_timeout_ms=3000,
            heartbeat_interval_ms=750,
            fetch_max_wait_ms=20,
        ),
        callbacks=CallbackSettings(allow_private=True),
        api=ApiSettings(
            port=api_port,
            admin_token="test-admin-token",
            auth_cache_seconds=0.5,
            # Tests send many bad credentials from one address on purpose (the fuzzer above all);
            # the limiter has tests of its own with it on.
            failed_auth_per_minute=0,
            template_cache_seconds=0.5,
        ),
        # No recipient gap and no retry topic unless a test asks: most tests send to one recipient
        # several times, and expect in-process retries to end in `failed` within seconds.
        worker=WorkerSettings(
            provider_url=f"http://127.0.0.1:{sim_port}",
            provider_attempts=3,
            drain_seconds=5.0,
            recipient_gap_seconds=0.0,
            retry_delays_seconds=(),
            sms_config_refresh_seconds=0.2,
            sms_health_cooldown_seconds=1.0,
            smpp_submit_timeout_seconds=3.0,
            twilio_status_callback_url=f"http://127.0.0.1:{api_port}/v1/providers/twilio",
        ),
        # Receipts bind at once (API, status sink); the sweep catches the rest, soon in tests.
        sinks=SinkSettings(receipt_sweep_seconds=0.5),
        carrier_sim=CarrierSimSettings(
            port=sim_port,
            receipt_delay_ms=20,
            latency_ms=1,
            receipt_url=f"http://127.0.0.1:{api_port}/v1/providers/carrier-sim/receipts",
        ),
        # Meta's Graph API is the in-process double; reviews and statuses come quickly, and the
        # template sweep only when a test runs it.
        whatsapp=WhatsAppSettings(
            graph_url=f"http://127.0.0.1:{whatsapp_port}/v21.0", account_cache_seconds=0.5,
            template_sweep_seconds=3600.0,
        ),
        whatsapp_sim=WhatsAppSimSettings(
            port=whatsapp_port, latency_ms=1, status_delay_ms=20, review_delay_ms=100, webhook_batch_ms=10
        ),
        # The SMSC and the HTTP aggregator: started with the others; sms take them once a test
        # registers them as providers and routes (`Platform.sms_routes`).
        smsc_sim=SmscSimSettings(port=smsc_port, smpp_port=smpp_port, receipt_delay_ms=20),
        twilio_sim=TwilioSimSettings(port=twilio_port, status_delay_ms=20),
        # The SMTP relay and DNS double: every email goes to it.
        email=EmailSettings(
            smtp_port=smtp_port, dns_server=f"127.0.0.1:{dns_port}", identity_cache_seconds=0.5,
            unsubscribe_url=f"http://127.0.0.1:{api_port}/v1/unsubscribe", inbound_port=inbound_mail_port,
            ses_endpoint_url=f"http://127.0.0.1:{ses_port}", ses_access_key_id="testing",
            ses_secret_access_key="testing", ses_notifications=True,
            ses_notification_topics=(SesSimSettings().topic_arn,), sns_trusted_prefixes=(f"http://127.0.0.1:{ses_port}/",),
        ),
        ses_sim=SesSimSettings(port=ses_port, notify_url=f"http://127.0.0.1:{api_port}/v1/providers/ses/notifications",
                               notify_delay_ms=20),
        mail_sim=MailSimSettings(port=mail_port, smtp_port=smtp_port, dns_port=dns_port, report_port=inbound_mail_port,
                                 report_delay_ms=20),
    )  # fmt: skip
    await ensure_topics(result.kafka, Names(prefix))
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests first (`@pytest.mark.long`): with `--dist worksteal` the other worker runs
    the rest meanwhile, instead of the suite ending on one long test."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
