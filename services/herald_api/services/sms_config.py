"""SMS providers and routes, administered (`herald.domain.sms_routing`); workers apply a change
within `worker.sms_config_refresh_seconds`."""

from __future__ import annotations

import uuid

import asyncpg

from herald.db import sms_config as store
from herald.domain.sms_routing import ProviderKind, Route, SmsProvider
from herald.errors import Conflict, FieldError, InvalidRequest, NotFound
from herald.keyring import KeyRing

SMPP_SYSTEM_ID_MAX, SMPP_PASSWORD_MAX = 15, 8
"""SMPP 3.4 5.2.1 and 5.2.2: C-Octet Strings of 16 and 9 octets, the NUL included."""


def _check(provider: SmsProvider, secret: str | None) -> None:
    if provider.kind is ProviderKind.SMPP:
        if secret is not None and len(secret.encode()) > SMPP_PASSWORD_MAX:
            raise InvalidRequest.field("secret", f"an SMPP password has at most {SMPP_PASSWORD_MAX} characters",
                                       code="invalid_provider")  # fmt: skip
        if len(provider.account.encode()) > SMPP_SYSTEM_ID_MAX:
            raise InvalidRequest.field("account", f"an SMPP system_id has at most {SMPP_SYSTEM_ID_MAX} characters",
                                       code="invalid_provider")  # fmt: skip
        host, _, port = provider.endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidRequest.field("endpoint", "must be host:port for an smpp provider", code="invalid_provider")
    elif not provider.endpoint.startswith(("http://", "https://")):
        raise InvalidRequest.field("endpoint", "must be an http(s) URL", code="invalid_provider")
    if provider.kind is not ProviderKind.CARRIER and not provider.account:
        raise InvalidRequest.field("account", f"a {provider.kind} provider needs its account", code="invalid_provider")


class SmsConfig:
    def __init__(self, pool: asyncpg.Pool, ring: KeyRing) -> None:
        self._pool = pool
        self._ring = ring

    async def put_provider(self, provider: SmsProvider, secret: str | None) -> tuple[SmsProvider, bool, bool]:
        """(the provider, whether it has a secret, whether it was created)."""
        _check(provider, secret)
        existing = {p.name: has for p, has in await store.providers(self._pool)}
        if secret is None and provider.kind is not ProviderKind.CARRIER and not existing.get(provider.name):
            raise InvalidRequest.field("secret", f"a new {provider.kind} provider needs its secret",
                                       code="invalid_provider")  # fmt: skip
        created = await store.put_provider(self._pool, self._ring, provider, secret)
        return provider, secret is not None or existing.get(provider.name, False), created

    async def providers(self) -> list[tuple[SmsProvider, bool]]:
        return await store.providers(self._pool)

    async def provider(self, name: str) -> tuple[SmsProvider, bool]:
        found = next((p for p in await store.providers(self._pool) if p[0].name == name), None)
        if found is None:
            raise NotFound("no such provider", code="provider_not_found")
        return found

    async def delete_provider(self, name: str) -> None:
        try:
            deleted = await store.delete_provider(self._pool, name)
        except store.ProviderInUse:
            raise Conflict("a route names this provider; change the route first", code="provider_in_use") from None
        if not deleted:
            raise NotFound("no such provider", code="provider_not_found")

    async def put_route(self, route: Route) -> Route:
        if unknown := await store.put_route(self._pool, route):
            raise InvalidRequest(
                f"no such provider: {', '.join(unknown)}", code="provider_not_found",
                fields=tuple(FieldError(f"providers[{route.providers.index(n)}]", "no such provider") for n in unknown),
            )  # fmt: skip
        return route

    async def twilio_token(self, name: str) -> str | None:
        """The auth token of Twilio-format provider `name`, which signs its callbacks."""
        return await store.secret_of(self._pool, self._ring, name, ProviderKind.TWILIO)

    async def routes(self) -> list[Route]:
        return await store.routes(self._pool)

    async def delete_route(self, tenant_id: uuid.UUID | None, country: str) -> None:
        if not await store.delete_route(self._pool, tenant_id, country):
            raise NotFound("no such route", code="route_not_found")
