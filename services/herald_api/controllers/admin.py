"""Platform admin: tenants and their API keys. Guarded by the admin token, never a tenant key."""

from __future__ import annotations

import secrets
import uuid

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from herald import callback_urls
from herald.db import tenants
from herald.db.tenants import TenantRow
from herald.domain import apikeys
from herald.errors import NotFound
from herald.ids import uuid7
from herald_api.auth import admin_guard
from herald_api.schemas import CallbackSecretOut, KeyCreate, KeyOut, TenantCreate, TenantOut, TenantPatch
from herald_api.services import Services


def new_callback_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _out(row: TenantRow, callback_secret: str | None = None) -> TenantOut:
    return TenantOut(**msgspec.structs.asdict(row), callback_secret=callback_secret)


class AdminController(Controller):
    path = "/v1/admin"
    guards = [admin_guard]
    tags = ["admin"]

    @post("/tenants", status_code=201, summary="Create a tenant; the callback secret is shown once")
    async def create_tenant(self, data: JSONBody[TenantCreate], svc: NamedDependency[Services]) -> TenantOut:
        if data.callback_url is not None:
            await callback_urls.validate(data.callback_url, callback_urls.CallbackPolicy.of(svc.settings.api))
        secret = new_callback_secret()
        row = await tenants.create(svc.pool, uuid7(), data.name, data.tier, data.verified, data.callback_url, secret)
        return _out(row, callback_secret=secret)

    @get("/tenants/{tenant_id:uuid}", summary="Read a tenant")
    async def get_tenant(self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]) -> TenantOut:
        row = await tenants.get(svc.pool, tenant_id)
        if row is None:
            raise NotFound("no such tenant", code="tenant_not_found")
        return _out(row)

    @patch("/tenants/{tenant_id:uuid}", summary="Change tier, verification, suspension or limits")
    async def patch_tenant(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[TenantPatch], svc: NamedDependency[Services]
    ) -> TenantOut:
        changes = {
            k: (v.value if hasattr(v, "value") else v)
            for k, v in msgspec.structs.asdict(data).items()
            if v is not msgspec.UNSET
        }
        if isinstance(data.callback_url, str):
            await callback_urls.validate(data.callback_url, callback_urls.CallbackPolicy.of(svc.settings.api))
        row = await tenants.patch(svc.pool, tenant_id, changes)
        if row is None:
            raise NotFound("no such tenant", code="tenant_not_found")
        return _out(row)

    @post("/tenants/{tenant_id:uuid}/callback-secret", status_code=201, summary="Rotate the callback secret")
    async def rotate_callback_secret(
        self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]
    ) -> CallbackSecretOut:
        secret = new_callback_secret()
        if not await tenants.rotate_callback_secret(svc.pool, tenant_id, secret):
            raise NotFound("no such tenant", code="tenant_not_found")
        return CallbackSecretOut(callback_secret=secret)

    @post("/tenants/{tenant_id:uuid}/keys", status_code=201, summary="Issue an API key; shown once")
    async def create_key(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[KeyCreate], svc: NamedDependency[Services]
    ) -> KeyOut:
        if await tenants.get(svc.pool, tenant_id) is None:
            raise NotFound("no such tenant", code="tenant_not_found")
        issued = apikeys.issue(data.kind)
        await tenants.add_key(svc.pool, tenant_id, issued)
        return KeyOut(id=issued.id, kind=issued.kind, key=issued.plaintext)

    @delete("/tenants/{tenant_id:uuid}/keys/{key_id:uuid}", status_code=204, summary="Revoke an API key")
    async def revoke_key(
        self, tenant_id: FromPath[uuid.UUID], key_id: FromPath[uuid.UUID], svc: NamedDependency[Services]
    ) -> None:
        if not await tenants.revoke_key(svc.pool, tenant_id, key_id):
            raise NotFound("no such key", code="key_not_found")
        svc.authenticator.forget(key_id)
