"""Platform admin: tenants, their callback secret and their API keys."""

from __future__ import annotations

import secrets
import uuid

import asyncpg
import msgspec

from herald import callback_urls
from herald.db import listings, tenants
from herald.domain import apikeys
from herald.domain.apikeys import IssuedKey
from herald.domain.models import KeyKind, Tier
from herald.domain.search import Cursor, TenantFilter
from herald.domain.tenants import Tenant
from herald.errors import Conflict, FieldError, NotFound
from herald.ids import uuid7


async def existing(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> Tenant:
    """The tenant; NotFound (`tenant_not_found`) for an unknown id, as for every admin route."""
    found = await tenants.get(pool, tenant_id)
    if found is None:
        raise NotFound("no such tenant", code="tenant_not_found")
    return found


def new_callback_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Tenancy:
    def __init__(self, pool: asyncpg.Pool, policy: callback_urls.CallbackPolicy) -> None:
        self._pool = pool
        self._policy = policy

    async def create(self, name: str, tier: Tier, verified: bool, callback_url: str | None) -> tuple[Tenant, str]:
        """The new tenant and its callback secret (shown once)."""
        if callback_url is not None:
            await callback_urls.validate(callback_url, self._policy)
        secret = new_callback_secret()
        return await tenants.create(self._pool, uuid7(), name, tier, verified, callback_url, secret), secret

    async def listing(
        self, found: TenantFilter, after: Cursor | None, limit: int
    ) -> tuple[list[Tenant], Cursor | None]:
        """A page of tenants, newest first, and the cursor of the next (None: the last)."""
        found = msgspec.structs.replace(found, window=found.window.checked())
        rows = await listings.tenants(self._pool, found, after, limit + 1)
        page = rows[:limit]
        return page, Cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None

    async def get(self, tenant_id: uuid.UUID) -> Tenant:
        return await existing(self._pool, tenant_id)

    async def patch(self, tenant_id: uuid.UUID, changes: dict[str, object]) -> Tenant:
        """`changes`: field -> new value, of `tenants.PATCHABLE`."""
        if isinstance(url := changes.get("callback_url"), str):
            await callback_urls.validate(url, self._policy)
        try:
            found = await tenants.patch(self._pool, tenant_id, changes)
        except tenants.SenderTaken:
            raise Conflict("another tenant sends from that address", code="sms_sender_taken",
                           fields=(FieldError("sms_sender", "taken"),)) from None  # fmt: skip
        if found is None:
            raise NotFound("no such tenant", code="tenant_not_found")
        return found

    async def rotate_callback_secret(self, tenant_id: uuid.UUID) -> str:
        secret = new_callback_secret()
        if not await tenants.rotate_callback_secret(self._pool, tenant_id, secret):
            raise NotFound("no such tenant", code="tenant_not_found")
        return secret

    async def issue_key(self, tenant_id: uuid.UUID, kind: KeyKind) -> IssuedKey:
        await self.get(tenant_id)
        issued = apikeys.issue(kind)
        await tenants.add_key(self._pool, tenant_id, issued)
        return issued

    async def revoke_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        if not await tenants.revoke_key(self._pool, tenant_id, key_id):
            raise NotFound("no such key", code="key_not_found")
