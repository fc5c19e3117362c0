"""A message's mail as every email provider hands it over: from its sending identity, with the
one-click unsubscribe of marketing mail, DKIM-signed (`mime.build`)."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import msgspec

from herald.caches import TTLCache
from herald.db import email_identities as store
from herald.domain import email as email_content
from herald.domain.email import Identity, IdentityStatus
from herald.domain.models import Category
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.email.unsubscribe import Tokens, Unsubscribe
from herald.keyring import KeyRing
from herald.settings import EmailSettings
from herald_worker.email.mime import OneClick, build
from herald_worker.providers.base import PermanentError


class Identities:
    """Each tenant's sending identities with their DKIM keys opened, cached for `ttl` seconds (a
    rotated key or a removed identity reaches every worker within it)."""

    def __init__(self, pool: asyncpg.Pool, ring: KeyRing, ttl: float) -> None:
        self._pool = pool
        self._ring = ring
        self._cache: TTLCache[tuple[uuid.UUID, str], tuple[Identity, bytes] | None] = TTLCache(ttl)

    async def get(self, tenant_id: uuid.UUID, from_address: str) -> tuple[Identity, bytes] | None:
        return await self._cache.get((tenant_id, from_address), lambda: self._load(tenant_id, from_address))

    async def _load(self, tenant_id: uuid.UUID, from_address: str) -> tuple[Identity, bytes] | None:
        identity = await store.get(self._pool, tenant_id, from_address)
        if identity is None or identity.status is not IdentityStatus.VERIFIED:
            return None
        key = await store.signing_key(self._pool, self._ring, tenant_id, from_address)
        return None if key is None else (identity, key)


class Composed(msgspec.Struct, frozen=True):
    identity: Identity
    raw: bytes
    """The signed message, CRLF line endings."""


class Composer:
    def __init__(self, settings: EmailSettings, identities: Identities, tokens: Tokens) -> None:
        self._settings = settings
        self._identities = identities
        self._tokens = tokens

    async def compose(self, message: OutboundMessage) -> Composed:
        """Raises PermanentError (`channel_not_connected`) when the identity the message was
        accepted from is gone or no longer verified."""
        found = None if message.sender is None else await self._identities.get(message.tenant_id, message.sender)
        if found is None:  # removed, or its key replaced and not verified again, since accept
            raise PermanentError(Reason.CHANNEL_NOT_CONNECTED)
        identity, key = found
        unsubscribe = None
        if message.category is Category.MARKETING:
            token = self._tokens.mint(Unsubscribe(message.tenant_id, message.id, message.to))
            unsubscribe = OneClick(f"{self._settings.unsubscribe_url.rstrip('/')}/{token}",
                                   self._settings.unsubscribe_mailto, token)  # fmt: skip
        # Off the event loop: building and signing is ~1-2 ms of CPU per mail (MIME, canonicalisation,
        # hashing; the RSA step on OpenSSL), which the loop's other sends should not wait behind.
        raw = await asyncio.to_thread(build, str(message.id), message.to, email_content.decode(message.body),
                                      identity, key, time.time(), unsubscribe)  # fmt: skip
        return Composed(identity, raw)
