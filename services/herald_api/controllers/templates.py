"""Tenant templates: create (linted), list, get, delete."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from herald.domain.templates import EmailParts, Template, placeholders
from herald.domain.whatsapp import Button, TemplateParts
from herald_api.auth import TENANT_AUTH, Principal
from herald_api.deps import Services
from herald_api.schemas import EmailPartsOut, Language, TemplateCreate, TemplateName, TemplateOut


def _out(row: Template) -> TemplateOut:
    return TemplateOut(
        name=row.name,
        language=row.language,
        version=row.version,
        category=row.category,
        channel=row.channel,
        body=row.body,
        status=row.status,
        placeholders=placeholders(
            row.body if row.email is None else "\n".join((row.email.subject, row.body, row.email.html or ""))
        ),
        created_at=row.created_at,
        email=None if (e := row.email) is None else EmailPartsOut(e.subject, e.html, e.from_address),
        requested_category=row.requested_category,
        rejection_reason=row.rejection_reason,
    )


class TemplateController(Controller):
    path = "/v1/templates"
    tags = ["templates"]
    middleware = [TENANT_AUTH]

    @post(
        "/",
        status_code=201,
        summary="Create a template (a new version if name+language exists); whatsapp: submitted to Meta",
    )
    async def create(
        self, data: JSONBody[TemplateCreate], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> TemplateOut:
        parts = None
        if (w := data.whatsapp) is not None:
            parts = TemplateParts(
                examples=w.examples, header=w.header, footer=w.footer,
                buttons=tuple(Button(b.type, b.text, b.url, b.phone_number) for b in w.buttons),
            )  # fmt: skip
        email = None
        if (e := data.email) is not None:
            email = EmailParts(e.subject, e.html, None if e.from_address is None else e.from_address.lower())
        made = await svc.catalogue.create(
            principal.tenant.id, data.name, data.language, data.category, data.channel, data.body, parts, email
        )
        return _out(made)

    @get("/", summary="List the latest version of each template")
    async def list_templates(
        self, principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> list[TemplateOut]:
        return [_out(t) for t in await svc.catalogue.list_latest(principal.tenant.id)]

    @get("/{name:str}/{language:str}", summary="Read the latest version of a template")
    async def get_template(
        self,
        name: FromPath[TemplateName],
        language: FromPath[Language],
        principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> TemplateOut:
        return _out(await svc.catalogue.latest(principal.tenant.id, name, language))

    @delete("/{name:str}/{language:str}", status_code=204, summary="Delete every version of a template")
    async def delete_template(
        self,
        name: FromPath[TemplateName],
        language: FromPath[Language],
        principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
    ) -> None:
        await svc.catalogue.delete(principal.tenant.id, name, language)
