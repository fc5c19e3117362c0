"""Email: the identities a tenant sends from, and the one-click unsubscribe its readers use."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from herald.domain.email import Identity
from herald_api.auth import TENANT_AUTH, Principal, counted_failures
from herald_api.deps import Services
from herald_api.schemas import DnsRecordOut, EmailAddress, IdentityIn, IdentityOut

UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post"><p>Stop receiving these emails?</p><button type="submit">Unsubscribe</button></form>
</body></html>"""
"""GET shows a button, never unsubscribes: mail scanners follow links (RFC 8058 §4)."""


def _out(identity: Identity) -> IdentityOut:
    return IdentityOut(
        from_address=identity.from_address, from_name=identity.from_name, domain=identity.domain,
        selector=identity.selector, status=identity.status.value,
        dns_records=[DnsRecordOut(r.type, r.name, r.value) for r in identity.dns_records()],
        created_at=identity.created_at, verified_at=identity.verified_at,
    )  # fmt: skip


class IdentityController(Controller):
    path = "/v1/email/identities"
    tags = ["email"]
    middleware = [TENANT_AUTH]

    @put("/", summary="Create an identity with its DKIM key, or replace its key (write-only)")
    async def put_identity(
        self, data: JSONBody[IdentityIn], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> IdentityOut:
        made = await svc.email.put_identity(
            principal.tenant.id, data.from_address.lower(), data.from_name, data.selector, data.dkim_private_key
        )
        return _out(made)

    @get("/", summary="The tenant's identities")
    async def list_identities(
        self, principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> list[IdentityOut]:
        return [_out(i) for i in await svc.email.identities(principal.tenant.id)]

    @get("/{from_address:str}", summary="One identity, with the DNS records to publish")
    async def get_identity(
        self, from_address: FromPath[EmailAddress], principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> IdentityOut:  # fmt: skip
        return _out(await svc.email.identity(principal.tenant.id, from_address.lower()))

    @post("/{from_address:str}/verify", status_code=200,
          summary="Look the DKIM record up in DNS; `verified` once it publishes the key")  # fmt: skip
    async def verify(
        self, from_address: FromPath[EmailAddress], principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> IdentityOut:  # fmt: skip
        return _out(await svc.email.verify(principal.tenant.id, from_address.lower()))

    @delete("/{from_address:str}", status_code=204, summary="Remove an identity (its mail not yet sent fails)")
    async def remove(
        self, from_address: FromPath[EmailAddress], principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> None:  # fmt: skip
        await svc.email.remove(principal.tenant.id, from_address.lower())


class SesNotificationController(Controller):
    """Amazon SES's events through SNS (an HTTPS subscription of the configured topic)."""

    path = "/v1/providers/ses"
    tags = ["providers"]

    @post("/notifications", status_code=200,
          summary="SES events through SNS (signed): deliveries, bounces, complaints, subscriptions")  # fmt: skip
    async def notification(self, request: Request[Any, Any, Any], svc: NamedDependency[Services]) -> None:
        with counted_failures(request):
            # SNS posts JSON as text/plain: the raw body is read, whatever the content type says.
            await svc.email.ses_notification(await request.body())


class UnsubscribeController(Controller):
    """RFC 8058: a mail client POSTs `List-Unsubscribe=One-Click` to the URL, without a login."""

    path = "/v1/unsubscribe"
    tags = ["email"]

    @post("/{token:str}", status_code=200, summary="One-click unsubscribe (RFC 8058): no login, idempotent")
    async def unsubscribe(self, token: FromPath[str], svc: NamedDependency[Services]) -> Response[str]:
        await svc.email.unsubscribe(token)
        return Response("You are unsubscribed.", media_type=MediaType.TEXT)

    @get("/{token:str}", summary="The page a reader who opens the link sees: a button that POSTs")
    async def page(self, token: FromPath[str]) -> Response[str]:
        return Response(UNSUBSCRIBE_PAGE, media_type=MediaType.HTML)
