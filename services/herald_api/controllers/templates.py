"""Tenant templates: create (linted), list, get, delete."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from herald.db import templates
from herald.db.templates import TemplateRow
from herald.domain.templates import lint, placeholders
from herald.errors import InvalidRequest, NotFound
from herald_api.auth import TENANT_AUTH, Principal
from herald_api.schemas import Language, TemplateCreate, TemplateName, TemplateOut
from herald_api.services import Services


def _out(row: TemplateRow) -> TemplateOut:
    return TemplateOut(
        name=row.name,
        language=row.language,
        version=row.version,
        category=row.category,
        channel=row.channel,
        body=row.body,
        status=row.status,
        placeholders=placeholders(row.body),
        created_at=row.created_at,
    )


class TemplateController(Controller):
    path = "/v1/templates"
    tags = ["templates"]
    middleware = [TENANT_AUTH]

    @post("/", status_code=201, summary="Create a template (a new version if name+language exists)")
    async def create(
        self, data: JSONBody[TemplateCreate], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> TemplateOut:
        problems = lint(data.body, data.channel, data.category)
        if problems:
            raise InvalidRequest(
                "; ".join(f"{p.field}: {p.message}" for p in problems), code="template_invalid", fields=tuple(problems)
            )
        row = await templates.create(
            svc.pool, principal.tenant.id, data.name, data.language, data.category, data.channel, data.body
        )
        svc.templates.invalidate(principal.tenant.id, data.name, data.language)
        return _out(row)

    @get("/", summary="List the latest version of each template")
    async def list_templates(
        self, principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> list[TemplateOut]:
        return [_out(r) for r in await templates.list_latest(svc.pool, principal.tenant.id)]

    @get("/{name:str}/{language:str}", summary="Read the latest version of a template")
    async def get_template(
        self,
        name: FromPath[TemplateName],
        language: FromPath[Language],
        principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> TemplateOut:
        row = await templates.latest(svc.pool, principal.tenant.id, name, language)
        if row is None:
            raise NotFound("no such template", code="template_not_found")
        return _out(row)

    @delete("/{name:str}/{language:str}", status_code=204, summary="Delete every version of a template")
    async def delete_template(
        self,
        name: FromPath[TemplateName],
        language: FromPath[Language],
        principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> None:
        if not await templates.delete(svc.pool, principal.tenant.id, name, language):
            raise NotFound("no such template", code="template_not_found")
        svc.templates.invalidate(principal.tenant.id, name, language)
