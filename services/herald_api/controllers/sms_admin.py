"""SMS providers and routes (admin): `herald.domain.sms_routing`."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from herald.domain.sms_routing import Route, SmsProvider
from herald_api.auth import admin_guard
from herald_api.deps import Services
from herald_api.schemas import ProviderIn, ProviderOut, RouteIn, RouteOut

Name = Annotated[str, Parameter(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="The provider's name")]


def _provider_out(provider: SmsProvider, has_secret: bool) -> ProviderOut:
    p = provider
    return ProviderOut(
        name=p.name, kind=p.kind, endpoint=p.endpoint, account=p.account, sender=p.sender,
        rate_per_second=p.rate_per_second, window=p.window, binds=p.binds, prices=dict(p.prices), enabled=p.enabled,
        has_secret=has_secret,
    )  # fmt: skip


def _route_out(route: Route) -> RouteOut:
    return RouteOut(route.country, route.strategy, list(route.providers), route.tenant_id)


class SmsProviderController(Controller):
    path = "/v1/admin/providers"
    guards = [admin_guard]
    tags = ["sms routing"]

    @put("/{name:str}", summary="Register or replace an sms provider (the secret is write-only)")
    async def put_provider(
        self, name: FromPath[Name], data: JSONBody[ProviderIn], svc: NamedDependency[Services]
    ) -> Response[ProviderOut]:
        d = data
        provider = SmsProvider(
            name=name, kind=d.kind, endpoint=d.endpoint, account=d.account, sender=d.sender or "",
            rate_per_second=d.rate_per_second, window=d.window, binds=d.binds, prices=dict(d.prices), enabled=d.enabled,
        )  # fmt: skip
        saved, has_secret, created = await svc.sms_config.put_provider(provider, d.secret)
        return Response(_provider_out(saved, has_secret), status_code=201 if created else 200)

    @get("/", summary="Every sms provider (never a secret)")
    async def list_providers(self, svc: NamedDependency[Services]) -> list[ProviderOut]:
        return [_provider_out(p, has) for p, has in await svc.sms_config.providers()]

    @get("/{name:str}", summary="One sms provider")
    async def read_provider(self, name: FromPath[Name], svc: NamedDependency[Services]) -> ProviderOut:
        return _provider_out(*await svc.sms_config.provider(name))

    @delete("/{name:str}", status_code=204, summary="Remove a provider no route names")
    async def delete_provider(self, name: FromPath[Name], svc: NamedDependency[Services]) -> None:
        await svc.sms_config.delete_provider(name)


class SmsRouteController(Controller):
    path = "/v1/admin/routes"
    guards = [admin_guard]
    tags = ["sms routing"]

    @put("/", summary="Set the route for a country (or `*`), for every tenant or one")
    async def put_route(self, data: JSONBody[RouteIn], svc: NamedDependency[Services]) -> RouteOut:
        route = Route(country=data.country, strategy=data.strategy, providers=tuple(data.providers),
                      tenant_id=data.tenant_id)  # fmt: skip
        return _route_out(await svc.sms_config.put_route(route))

    @get("/", summary="Every route")
    async def list_routes(self, svc: NamedDependency[Services]) -> list[RouteOut]:
        return [_route_out(r) for r in await svc.sms_config.routes()]

    @delete("/", status_code=204, summary="Remove the route for a country (and tenant)")
    async def delete_route(
        self,
        svc: NamedDependency[Services],
        country: FromQuery[Annotated[str, Parameter(pattern=r"^([A-Z]{2}|\*)$")]],
        tenant_id: FromQuery[uuid.UUID | None] = None,
    ) -> None:
        await svc.sms_config.delete_route(tenant_id, country)
