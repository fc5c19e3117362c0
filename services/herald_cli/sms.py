"""`herald sms show|apply FILE`: the sms providers and routes, as the admin API sets them.

`apply` reads a JSON file `{"providers": {name: {kind, endpoint, account, secret | secret_env,
sender, rate_per_second, window, binds, prices, enabled}}, "routes": [{country, providers,
strategy, tenant_id}]}` and puts each provider, then each route, through the same checks as
`PUT /v1/admin/providers/{name}` and `PUT /v1/admin/routes`. A secret is best given by the name
of an environment variable (`secret_env`), so that the file holds none. Running workers apply
the result within `worker.sms_config_refresh_seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg
import msgspec

from herald.db.pool import opened_pool
from herald.domain.sms_routing import ProviderKind, Route, SmsProvider, Strategy
from herald.errors import HeraldError
from herald.keyring import KeyRing
from herald_api.services.sms_config import SmsConfig
from herald_cli.settings import Settings


class ProviderFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: ProviderKind
    endpoint: str
    account: str = ""
    secret: str | None = None
    secret_env: str | None = None
    sender: str = ""
    rate_per_second: int = 0
    window: int = 10
    binds: int = 1
    prices: dict[str, int] = {}
    enabled: bool = True


class RouteFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    country: str
    providers: list[str]
    strategy: Strategy = Strategy.ORDERED
    tenant_id: uuid.UUID | None = None


class ConfigFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    providers: dict[str, ProviderFile] = {}
    routes: list[RouteFile] = []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sms_command", required=True)
    sub.add_parser("show", help="the providers (never a secret) and the routes")
    apply = sub.add_parser("apply", help="put the providers and routes a JSON file describes")
    apply.add_argument("file", type=Path)


async def apply(pool: asyncpg.Pool, ring: KeyRing, config: ConfigFile) -> None:
    """Put every provider, then every route (validated as the admin API validates them)."""
    service = SmsConfig(pool, ring)
    for name, p in config.providers.items():
        secret = os.environ.get(p.secret_env) if p.secret_env else p.secret
        provider = SmsProvider(
            name=name, kind=p.kind, endpoint=p.endpoint, account=p.account, sender=p.sender,
            rate_per_second=p.rate_per_second, window=p.window, binds=p.binds, prices=p.prices, enabled=p.enabled,
        )  # fmt: skip
        await service.put_provider(provider, secret)
    for r in config.routes:
        await service.put_route(Route(r.country, r.strategy, tuple(r.providers), r.tenant_id))


def run(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.database.url:
        sys.exit("herald sms needs HERALD_DATABASE_URL")
    try:
        asyncio.run(_run(settings, args))
    except HeraldError as exc:
        sys.exit(f"herald sms: {exc.code}: {exc.detail}")


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    ring = KeyRing(settings.secrets.keys())
    async with opened_pool(settings.database) as pool:
        if args.sms_command == "apply":
            try:
                config = msgspec.json.decode(args.file.read_bytes(), type=ConfigFile)
            except (OSError, msgspec.DecodeError) as exc:
                sys.exit(f"herald sms apply: {args.file}: {exc}")
            await apply(pool, ring, config)
        service = SmsConfig(pool, ring)
        for provider, has_secret in await service.providers():
            p = provider
            state = "enabled" if p.enabled else "disabled"
            print(f"provider {p.name}\t{p.kind}\t{p.endpoint}\t{p.rate_per_second} msg/s\tsecret: "
                  f"{'set' if has_secret else 'none'}\t{state}")  # fmt: skip
        for route in await service.routes():
            who = f"tenant {route.tenant_id}" if route.tenant_id else "every tenant"
            print(f"route {route.country}\t{who}\t{route.strategy}\t{' > '.join(route.providers)}")
