"""Platform admin: tenants and their API keys. Guarded by the admin token, never a tenant key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from herald.domain.models import Tier
from herald.domain.search import Cursor, TenantFilter, TimeRange
from herald.domain.tenants import Tenant
from herald_api.auth import admin_guard
from herald_api.deps import Services
from herald_api.schemas import CallbackSecretOut, KeyCreate, KeyOut, TenantCreate, TenantOut, TenantPage, TenantPatch


def _out(tenant: Tenant, callback_secret: str | None = None) -> TenantOut:
    return TenantOut(**msgspec.structs.asdict(tenant), callback_secret=callback_secret)


class AdminController(Controller):
    path = "/v1/admin"
    guards = [admin_guard]
    tags = ["admin"]

    @post("/tenants", status_code=201, summary="Create a tenant; the callback secret is shown once")
    async def create_tenant(self, data: JSONBody[TenantCreate], svc: NamedDependency[Services]) -> TenantOut:
        tenant, secret = await svc.tenancy.create(data.name, data.tier, data.verified, data.callback_url)
        return _out(tenant, callback_secret=secret)

    @get("/tenants", summary="Tenants, newest first, a page at a time (`after`: the previous `next`)")
    async def list_tenants(
        self,
        svc: NamedDependency[Services],
        tier: FromQuery[Tier | None] = None,
        suspended: FromQuery[bool | None] = None,
        created_after: FromQuery[Annotated[datetime | None, Parameter(description="Inclusive, with an offset")]] = None,
        created_before: FromQuery[Annotated[datetime | None, Parameter(description="Exclusive")]] = None,
        after: FromQuery[Annotated[str | None, Parameter(max_length=128)]] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=1000)]] = 100,
    ) -> TenantPage:
        found = TenantFilter(tier, suspended, TimeRange(created_after, created_before))
        cursor = None if after is None else Cursor.decode(after)
        page, following = await svc.tenancy.listing(found, cursor, limit)
        return TenantPage(items=[_out(t) for t in page], next=None if following is None else following.encode())

    @get("/tenants/{tenant_id:uuid}", summary="Read a tenant")
    async def get_tenant(self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]) -> TenantOut:
        return _out(await svc.tenancy.get(tenant_id))

    @patch("/tenants/{tenant_id:uuid}", summary="Change tier, verification, suspension or limits")
    async def patch_tenant(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[TenantPatch], svc: NamedDependency[Services]
    ) -> TenantOut:
        changes = {
            k: (v.value if hasattr(v, "value") else v)
            for k, v in msgspec.structs.asdict(data).items()
            if v is not msgspec.UNSET
        }
        return _out(await svc.tenancy.patch(tenant_id, changes))

    @post("/tenants/{tenant_id:uuid}/callback-secret", status_code=201, summary="Rotate the callback secret")
    async def rotate_callback_secret(
        self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]
    ) -> CallbackSecretOut:
        return CallbackSecretOut(callback_secret=await svc.tenancy.rotate_callback_secret(tenant_id))

    @post("/tenants/{tenant_id:uuid}/keys", status_code=201, summary="Issue an API key; shown once")
    async def create_key(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[KeyCreate], svc: NamedDependency[Services]
    ) -> KeyOut:
        issued = await svc.tenancy.issue_key(tenant_id, data.kind)
        return KeyOut(id=issued.id, kind=issued.kind, key=issued.plaintext)

    @delete("/tenants/{tenant_id:uuid}/keys/{key_id:uuid}", status_code=204, summary="Revoke an API key")
    async def revoke_key(
        self, tenant_id: FromPath[uuid.UUID], key_id: FromPath[uuid.UUID], svc: NamedDependency[Services]
    ) -> None:
        await svc.tenancy.revoke_key(tenant_id, key_id)
        svc.authenticator.forget(key_id)
