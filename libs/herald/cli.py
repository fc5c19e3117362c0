"""The `herald` command: one subcommand per process or operation."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shutil
import sys
from typing import Any

import uvloop

from herald import logs
from herald.settings import Settings


def _api(settings: Settings) -> None:
    if settings.api.workers > 1:
        # Several processes: each writes its metrics to files here and /metrics sums them
        # (prometheus_client's multiprocess mode, read at import time, so set before the
        # worker processes import the app). Stale files from an earlier run are removed.
        folder = (settings.data_dir / "prometheus-api").resolve()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from herald_api.http_server import uvicorn_options

    def config(port: int) -> uvicorn.Config:
        return uvicorn.Config(
            "herald_api.server:factory", factory=True, host=settings.api.host, port=port,
            workers=settings.api.workers, timeout_graceful_shutdown=10, **_UVICORN, **uvicorn_options(settings.api),
        )  # fmt: skip

    main = config(settings.api.port)
    # One server on one or two listeners; with an admin port, the app answers admin routes only
    # there and tenant routes only on the main port (herald_api.app.listener_guard).
    sockets = [main.bind_socket()]
    if settings.api.admin_port:
        sockets.append(config(settings.api.admin_port).bind_socket())
    if main.workers > 1:
        Multiprocess(main, sockets=sockets).run()
    else:
        uvicorn.Server(main).run(sockets=sockets)


def _consumer_process(settings: Settings, module: str, host: str, port: int) -> None:
    """worker and sinks: a main coroutine `run(settings, stop, membership)` beside the ops HTTP
    server, whose /readyz answers 200 once the process has joined its consumer groups."""
    from herald.kafka.membership import Membership
    from herald.runtime import run_until_signalled

    mod = importlib.import_module(module)
    membership = Membership()
    uvloop.run(
        run_until_signalled(
            lambda stop: mod.run(settings, stop, membership), mod.ops_app(settings, membership), host, port
        )
    )


def _worker(settings: Settings) -> None:
    _consumer_process(settings, "herald_worker.main", settings.worker.metrics_host, settings.worker.metrics_port)


def _sinks(settings: Settings) -> None:
    _consumer_process(settings, "herald_sinks.main", settings.sinks.metrics_host, settings.sinks.metrics_port)


def _carrier_sim(settings: Settings) -> None:
    from herald_carrier_sim.app import create_app

    _serve(create_app(settings.carrier_sim, settings.provider), settings.carrier_sim.host, settings.carrier_sim.port)


_UVICORN: dict[str, Any] = {"loop": "uvloop", "log_level": "warning", "access_log": False, "log_config": None}
"""uvicorn as measured (uvloop, and httptools below), no access log, our JSON logging."""


def _serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, http="httptools", **_UVICORN)


def _migrate(settings: Settings) -> None:
    from herald.db.migrate import migrate
    from herald.kafka.admin import ensure_topics
    from herald.kafka.topics import Names

    async def run() -> None:
        applied = await migrate(settings.database.url)
        created = await ensure_topics(settings.kafka, Names(settings.kafka.topic_prefix))
        print(f"migrations applied: {len(applied)}; topics created: {len(created)}")

    if not settings.database.url or not settings.kafka.bootstrap:
        sys.exit("herald migrate needs HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP")
    asyncio.run(run())


def _retention(settings: Settings) -> None:
    from datetime import UTC, datetime

    from herald.db.pool import opened_pool
    from herald.db.retention import purge

    async def run() -> None:
        async with opened_pool(settings.database) as pool:
            purged = await purge(pool, datetime.now(UTC), content_days=settings.retention.content_days)
        print(
            f"purged: {purged.recipients} expired recipient entries, {purged.claims} idempotency claims, "
            f"{purged.dead_callbacks} dead callbacks, {purged.retries} handled-retry records, "
            f"{purged.deferrals} deferral notes, {purged.receipts} provider receipt records, "
            f"{purged.content_hours} hours of message content (older than {settings.retention.content_days} days)"
        )

    if not settings.database.url:
        sys.exit("herald retention needs HERALD_DATABASE_URL")
    asyncio.run(run())


def _billing(settings: Settings, args: argparse.Namespace) -> None:
    from herald.billing import commands

    commands.run(settings, args)


def _dlq(settings: Settings, args: argparse.Namespace) -> None:
    from herald_worker import replay

    replay.run(settings, args)


def _parked(settings: Settings, args: argparse.Namespace) -> None:
    from herald_sinks import parking

    parking.run(settings, args)


def _keygen(_: Settings) -> None:
    import base64
    import secrets

    print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="))


def _dev(settings: Settings) -> None:
    from herald_dev.supervisor import run_dev

    sys.exit(run_dev(settings))


COMMANDS = {
    "api": (_api, "serve the HTTP API"),
    "worker": (_worker, "deliver messages (a consumer-group member)"),
    "sinks": (_sinks, "project statuses into Postgres"),
    "carrier-sim": (_carrier_sim, "run the simulated carrier"),
    "migrate": (_migrate, "apply database migrations and create topics"),
    "retention": (
        _retention,
        "purge message content past retention, old limit entries, claims, dead callbacks (daily)",
    ),
    "dev": (_dev, "run everything on embedded Postgres and broker (make run)"),
    "keygen": (_keygen, "print a new random key (for HERALD_SECRETS_KEK and other secrets)"),
}
SERVING = frozenset({"api", "worker", "sinks"})
"""Processes that face the network or hold Herald's keys: in production they refuse to start on
a secret from this repository (`Settings.refusals`)."""
# Commands with arguments of their own: (run, help, add_arguments).
ARG_COMMANDS = {
    "billing": (_billing, "rate cards, usage exports and reconciliation", "herald.billing.commands"),
    "dlq": (_dlq, "dead-letter topic: replay failed messages", "herald_worker.replay"),
    "parked": (_parked, "records the sinks refused: list them, apply them again", "herald_sinks.parking"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="herald", description="Herald notification platform")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    for name, (_, help_text, module) in ARG_COMMANDS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        sys.exit(str(exc))
    logs.configure(settings.log_level, args.command)
    if args.command in SERVING and (refusals := settings.refusals()):
        sys.exit(
            "refusing to start in production (HERALD_ENVIRONMENT=production, the default):\n  "
            + "\n  ".join(refusals)
            + "\nset real secrets (`herald keygen` makes one), or HERALD_ENVIRONMENT=development"
        )
    if args.command in ARG_COMMANDS:
        ARG_COMMANDS[args.command][0](settings, args)
    else:
        COMMANDS[args.command][0](settings)


if __name__ == "__main__":
    main()
