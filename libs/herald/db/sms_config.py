"""SMS providers and routes (migration 0025): every change bumps `sms_config.version` in its own
transaction, which workers poll; a provider's secret is stored wrapped under the KEK and opened
only by `load` (the worker) and `secret_of` (the API, to verify a provider's signed callback)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from herald.domain.sms_routing import ProviderKind, Route, SmsProvider, Strategy
from herald.keyring import KeyRing

_PRICES = msgspec.json.Decoder(dict[str, int])
_PROVIDER_COLUMNS = "name, kind, endpoint, account, sender, rate_per_second, window_size, binds, prices, enabled"


class ProviderInUse(Exception):
    """A route names the provider: remove it from the route first."""


class Config(msgspec.Struct, frozen=True):
    """What a worker routes by: every provider with its secret opened, and every route."""

    version: int
    providers: dict[str, SmsProvider]
    secrets: dict[str, str]
    routes: tuple[Route, ...]


def _context(name: str) -> str:
    return f"sms-provider:{name}:secret"


def _provider(row: asyncpg.Record) -> SmsProvider:
    return SmsProvider(
        name=row["name"], kind=ProviderKind(row["kind"]), endpoint=row["endpoint"], account=row["account"],
        sender=row["sender"], rate_per_second=row["rate_per_second"], window=row["window_size"], binds=row["binds"],
        prices=_PRICES.decode(row["prices"]), enabled=row["enabled"],
    )  # fmt: skip


def _route(row: asyncpg.Record) -> Route:
    return Route(country=row["country"], strategy=Strategy(row["strategy"]), providers=tuple(row["providers"]),
                 tenant_id=row["tenant_id"])  # fmt: skip


async def _bump(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
    await conn.execute("UPDATE sms_config SET version = version + 1")


async def put_provider(pool: asyncpg.Pool, ring: KeyRing, provider: SmsProvider, secret: str | None) -> bool:
    """Create or replace; a replacement without `secret` keeps the stored one. True if created."""
    wrapped = None if secret is None else ring.wrap(secret.encode(), _context(provider.name))
    async with pool.acquire() as conn, conn.transaction():
        created: bool = await conn.fetchval(
            "INSERT INTO sms_providers (name, kind, endpoint, account, secret, sender, rate_per_second, window_size,"
            " binds, prices, enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)"
            " ON CONFLICT (name) DO UPDATE SET kind = $2, endpoint = $3, account = $4,"
            " secret = coalesce($5, sms_providers.secret), sender = $6, rate_per_second = $7, window_size = $8,"
            " binds = $9, prices = $10::jsonb, enabled = $11, updated_at = now()"
            " RETURNING xmax = 0",
            provider.name, provider.kind.value, provider.endpoint, provider.account, wrapped, provider.sender,
            provider.rate_per_second, provider.window, provider.binds,
            msgspec.json.encode(provider.prices).decode(), provider.enabled,
        )  # fmt: skip
        await _bump(conn)
    return created


async def providers(pool: asyncpg.Pool) -> list[tuple[SmsProvider, bool]]:
    """Every provider, by name, and whether it has a secret (never the secret)."""
    rows = await pool.fetch(f"SELECT {_PROVIDER_COLUMNS}, secret IS NOT NULL AS has_secret FROM sms_providers"
                            " ORDER BY name")  # fmt: skip
    return [(_provider(r), r["has_secret"]) for r in rows]


async def delete_provider(pool: asyncpg.Pool, name: str) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM sms_routes WHERE $1 = ANY(providers) LIMIT 1", name):
            raise ProviderInUse
        done = await conn.fetch("DELETE FROM sms_providers WHERE name = $1 RETURNING 1", name)
        if done:
            await _bump(conn)
    return bool(done)


async def put_route(pool: asyncpg.Pool, route: Route) -> Sequence[str]:
    """Create or replace the route for (tenant, country). Returns the names it lists that are
    not providers (nothing is written then)."""
    async with pool.acquire() as conn, conn.transaction():
        known = {r["name"] for r in await conn.fetch("SELECT name FROM sms_providers WHERE name = ANY($1)",
                                                      list(route.providers))}  # fmt: skip
        unknown = [n for n in route.providers if n not in known]
        if unknown:
            return unknown
        await conn.execute(
            "DELETE FROM sms_routes WHERE tenant_id IS NOT DISTINCT FROM $1 AND country = $2",
            route.tenant_id, route.country,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO sms_routes (tenant_id, country, strategy, providers) VALUES ($1, $2, $3, $4)",
            route.tenant_id, route.country, route.strategy.value, list(route.providers),
        )  # fmt: skip
        await _bump(conn)
    return []


async def routes(pool: asyncpg.Pool) -> list[Route]:
    rows = await pool.fetch("SELECT tenant_id, country, strategy, providers FROM sms_routes"
                            " ORDER BY tenant_id NULLS FIRST, country")  # fmt: skip
    return [_route(r) for r in rows]


async def delete_route(pool: asyncpg.Pool, tenant_id: uuid.UUID | None, country: str) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetch(
            "DELETE FROM sms_routes WHERE tenant_id IS NOT DISTINCT FROM $1 AND country = $2 RETURNING 1",
            tenant_id, country,
        )  # fmt: skip
        if done:
            await _bump(conn)
    return bool(done)


async def version(pool: asyncpg.Pool) -> int:
    found: int = await pool.fetchval("SELECT version FROM sms_config")
    return found


async def load(pool: asyncpg.Pool, ring: KeyRing) -> Config:
    """The whole configuration in one snapshot, secrets opened (in memory only)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        current: int = await conn.fetchval("SELECT version FROM sms_config")
        rows = await conn.fetch(f"SELECT {_PROVIDER_COLUMNS}, secret FROM sms_providers")
        route_rows = await conn.fetch("SELECT tenant_id, country, strategy, providers FROM sms_routes")
    found = {r["name"]: _provider(r) for r in rows}
    secrets = {r["name"]: ring.unwrap(bytes(r["secret"]), _context(r["name"])).decode()
               for r in rows if r["secret"] is not None}  # fmt: skip
    return Config(current, found, secrets, tuple(_route(r) for r in route_rows))


async def secret_of(pool: asyncpg.Pool, ring: KeyRing, name: str, kind: ProviderKind) -> str | None:
    """A provider's secret, if `name` is a provider of that kind with one."""
    wrapped = await pool.fetchval("SELECT secret FROM sms_providers WHERE name = $1 AND kind = $2", name, kind.value)
    return None if wrapped is None else ring.unwrap(bytes(wrapped), _context(name)).decode()


async def tenant_of_sender(pool: asyncpg.Pool, sender: str) -> uuid.UUID | None:
    """The tenant sending from `sender` (its own address), if any."""
    found: uuid.UUID | None = await pool.fetchval("SELECT id FROM tenants WHERE sms_sender = $1", sender)
    return found


async def rewrap(pool: asyncpg.Pool, ring: KeyRing) -> int:
    """Every provider secret wrapped under the current KEK (after a rotation); rows changed. Each
    guarded by what it read: a secret replaced meanwhile keeps its new value."""
    changed = 0
    for row in await pool.fetch("SELECT name, secret FROM sms_providers WHERE secret IS NOT NULL"):
        rewrapped = ring.rewrapped(bytes(row["secret"]), _context(row["name"]))
        if rewrapped is None:
            continue
        status = await pool.execute("UPDATE sms_providers SET secret = $2 WHERE name = $1 AND secret = $3",
                                    row["name"], rewrapped, row["secret"])  # fmt: skip
        changed += status == "UPDATE 1"
    return changed
