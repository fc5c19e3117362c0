"""A tenant's WhatsApp Business Account, and Meta's webhook.

`PUT /v1/whatsapp/account` connects the account (and rotates its secrets: the same call with new
ones); the secrets are write-only. `/v1/providers/whatsapp/webhook` is what the tenant's Meta
app calls: `GET` for the subscription handshake, `POST` for notifications, each POST believed
only under the app secret of the account it names (`herald_api.services.whatsapp`).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Response

from herald.domain.whatsapp import Account, PhoneNumber, Secrets
from herald_api.auth import TENANT_AUTH, Principal, admin_guard, counted_failures
from herald_api.deps import Services
from herald_api.schemas import PhoneNumberOut, WhatsAppAccountIn, WhatsAppAccountOut
from herald_api.services.whatsapp import Connection


def _out(account: Account) -> WhatsAppAccountOut:
    return WhatsAppAccountOut(
        waba_id=account.waba_id, display_name=account.display_name,
        phone_numbers=[PhoneNumberOut(n.id, n.throughput, n.display_phone_number) for n in account.numbers],
        status=account.status.value, messaging_limit=account.messaging_limit.value,
        connected_at=account.connected_at, secrets_rotated_at=account.rotated_at,
        suspended_reason=account.suspended_reason, quality=account.quality,
    )  # fmt: skip


def _connection(data: WhatsAppAccountIn) -> Connection:
    return Connection(
        waba_id=data.waba_id, display_name=data.display_name,
        numbers=[PhoneNumber(id=n.id, throughput=n.throughput) for n in data.phone_numbers],
        secrets=Secrets(access_token=data.access_token, app_secret=data.app_secret),
        verify_token=data.verify_token,
    )  # fmt: skip


class WhatsAppAccountController(Controller):
    path = "/v1/whatsapp/account"
    tags = ["whatsapp"]
    middleware = [TENANT_AUTH]

    @put("/", summary="Connect the tenant's WhatsApp Business Account (again, to rotate its secrets)")
    async def connect(
        self, data: JSONBody[WhatsAppAccountIn], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> WhatsAppAccountOut:
        return _out(await svc.whatsapp.connect(principal.tenant.id, _connection(data)))

    @get("/", summary="The connected account (never its secrets)")
    async def account(
        self, principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> WhatsAppAccountOut:
        return _out(await svc.whatsapp.account(principal.tenant.id))

    @delete("/", status_code=204, summary="Disconnect it: its secrets are forgotten, its waiting messages fail")
    async def disconnect(self, principal: NamedDependency[Principal], svc: NamedDependency[Services]) -> None:
        await svc.whatsapp.disconnect(principal.tenant.id)


class WhatsAppAdminController(Controller):
    """The same, by an admin for a tenant (onboarding done by the platform's own staff)."""

    path = "/v1/admin/tenants/{tenant_id:uuid}/whatsapp"
    tags = ["admin"]
    guards = [admin_guard]

    @put("/", summary="Connect a tenant's WhatsApp Business Account (again, to rotate its secrets)")
    async def connect(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[WhatsAppAccountIn], svc: NamedDependency[Services]
    ) -> WhatsAppAccountOut:
        return _out(await svc.whatsapp.connect(tenant_id, _connection(data)))

    @get("/", summary="A tenant's connected account (never its secrets)")
    async def account(self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]) -> WhatsAppAccountOut:
        return _out(await svc.whatsapp.account(tenant_id))

    @delete("/", status_code=204, summary="Disconnect a tenant's account")
    async def disconnect(self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]) -> None:
        await svc.whatsapp.disconnect(tenant_id)


class WhatsAppWebhookController(Controller):
    path = "/v1/providers/whatsapp/webhook"
    tags = ["providers"]

    @get("/", summary="Meta's subscription handshake (hub.challenge)", media_type="text/plain")
    async def handshake(
        self,
        svc: NamedDependency[Services],
        mode: Annotated[str, QueryParameter(name="hub.mode", max_length=32)] = "",
        verify_token: Annotated[str, QueryParameter(name="hub.verify_token", max_length=1024)] = "",
        challenge: Annotated[str, QueryParameter(name="hub.challenge", max_length=256)] = "",
    ) -> str:
        return await svc.whatsapp.subscription(mode, verify_token, challenge)

    @post("/", status_code=200, summary="Meta's notifications (X-Hub-Signature-256)")
    async def notification(self, request: Request, svc: NamedDependency[Services]) -> Response[None]:  # type: ignore[type-arg]
        with counted_failures(request):
            raw = await request.body()
            await svc.whatsapp.notified(raw, request.headers.get("x-hub-signature-256", ""))
        return Response(None, status_code=200)
