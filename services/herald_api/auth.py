"""Authentication: tenant API keys (Bearer) and the separate admin token.

Tenant keys are verified against a salted hash in constant time. Lookups are cached per
process for `auth_cache_seconds`: that is the bound on how long a revoked key, a suspension or
a tier change takes to reach every API process.
"""

from __future__ import annotations

import contextlib
import hmac
import uuid
from collections.abc import Iterator

import asyncpg
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from herald.caches import TTLCache
from herald.db import tenants
from herald.db.tenants import KeyLookup
from herald.domain import apikeys
from herald.domain.models import KeyKind
from herald.domain.tenants import Tenant
from herald.errors import Forbidden, Unauthenticated
from herald_api.ratelimit import FailedAuthLimiter, KeyRateLimiter


class Principal(msgspec.Struct, frozen=True):
    tenant: Tenant
    key_id: uuid.UUID
    key_kind: KeyKind


def bearer(connection: ASGIConnection) -> str:  # type: ignore[type-arg]
    value = connection.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <key>'", code="missing_credentials")
    return token.strip()


class KeyAuthenticator:
    def __init__(self, pool: asyncpg.Pool, cache_seconds: float, limiter: KeyRateLimiter | None = None) -> None:
        self._pool = pool
        self._cache: TTLCache[uuid.UUID, KeyLookup | None] = TTLCache(cache_seconds)
        self._limiter = limiter or KeyRateLimiter(0)

    async def authenticate(self, presented: str) -> Principal:
        parsed = apikeys.parse(presented)
        if parsed is None:
            raise Unauthenticated("the API key is not valid", code="invalid_api_key")
        found = await self._cache.get(parsed.id, lambda: tenants.lookup_key(self._pool, parsed.id))
        # Verify the secret before looking at any state, so an attacker learns nothing from timing
        # or from the error about keys they do not hold.
        if found is None or not apikeys.verify(parsed, found.salt, found.hash) or found.kind != parsed.kind:
            raise Unauthenticated("the API key is not valid", code="invalid_api_key")
        if found.revoked:
            raise Unauthenticated("the API key has been revoked", code="api_key_revoked")
        if found.tenant.suspended:
            raise Forbidden("the tenant is suspended", code="tenant_suspended")
        self._limiter.check(found.key_id)
        return Principal(tenant=found.tenant, key_id=found.key_id, key_kind=found.kind)

    def forget(self, key_id: uuid.UUID) -> None:
        self._cache.invalidate(key_id)


def client_address(connection: ASGIConnection) -> str:  # type: ignore[type-arg]
    return connection.client.host if connection.client is not None else ""


@contextlib.contextmanager
def counted_failures(connection: ASGIConnection) -> Iterator[None]:  # type: ignore[type-arg]
    """Refuse a client that has failed too often (`FailedAuthLimiter`) before looking at its
    credentials, and count an `Unauthenticated` raised inside as one more failure."""
    limiter: FailedAuthLimiter = connection.app.state.services.failed_auth
    client = client_address(connection)
    limiter.check(client)
    try:
        yield
    except Unauthenticated:
        limiter.failed(client)
        raise


def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    expected: str = connection.app.state.services.settings.api.admin_token
    with counted_failures(connection):
        presented = bearer(connection)
        if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
            raise Unauthenticated("the admin token is not valid", code="invalid_admin_token")


class TenantAuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates every request to the tenant controllers before the body is even read, so an
    unauthenticated caller learns nothing from validation errors. Middleware rather than a DI
    provider: the send path is hot and Litestar's dependency resolution cost ~10% of it."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:  # type: ignore[type-arg]
        authenticator: KeyAuthenticator = connection.app.state.services.authenticator
        with counted_failures(connection):
            return AuthenticationResult(user=await authenticator.authenticate(bearer(connection)), auth=None)


TENANT_AUTH = DefineMiddleware(TenantAuthMiddleware)


def principal_dependency(request: Request) -> Principal:  # type: ignore[type-arg]
    """The principal TenantAuthMiddleware put on the request (for handlers that take it by DI)."""
    principal: Principal = request.user
    return principal
