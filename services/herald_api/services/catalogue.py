"""A tenant's templates: created linted, listed, read, deleted; the send path's cache kept true."""

from __future__ import annotations

import uuid

import asyncpg

from herald.db import email_identities as identities
from herald.db import templates
from herald.domain.email import lint_parts as lint_email
from herald.domain.models import Category, Channel
from herald.domain.templates import EmailParts, Template, lint
from herald.domain.whatsapp import TemplateParts
from herald.errors import FieldError, InvalidRequest, NotFound
from herald_api.services.sending import TemplateCache
from herald_api.services.whatsapp import WhatsApp


class Catalogue:
    def __init__(self, pool: asyncpg.Pool, cache: TemplateCache, whatsapp: WhatsApp) -> None:
        self._pool = pool
        self._cache = cache
        self._whatsapp = whatsapp

    async def create(
        self,
        tenant_id: uuid.UUID,
        name: str,
        language: str,
        category: Category,
        channel: Channel,
        body: str,
        parts: TemplateParts | None = None,
        email: EmailParts | None = None,
    ) -> Template:
        """A new template, or a new version of `name` + `language`. Raises InvalidRequest
        (`template_invalid`) with every lint problem. A whatsapp template is submitted to Meta
        and stays `pending` until Meta approves it (`WhatsApp.submit`). An email template needs
        its `email` parts (a subject at least); a `from_address` it names must be the tenant's."""
        problems = lint(body, channel, category)
        if channel is Channel.EMAIL:
            if email is None:
                raise InvalidRequest.field("email", "an email template needs a subject", code="template_invalid")
            problems += lint_email(email, body, category)
            sender = email.from_address
            if sender is not None and await identities.get(self._pool, tenant_id, sender) is None:
                problems.append(FieldError("email.from_address", "is not one of the tenant's email identities"))
        elif email is not None:
            raise InvalidRequest.field("email", "only an email template has email parts", code="template_invalid")
        if problems:
            raise InvalidRequest(
                "; ".join(f"{p.field}: {p.message}" for p in problems), code="template_invalid", fields=tuple(problems)
            )
        if channel is Channel.WHATSAPP:
            return await self._whatsapp.submit(tenant_id, name, language, category, body, parts or TemplateParts())
        if parts is not None:
            raise InvalidRequest.field(
                "whatsapp", "only a whatsapp template has whatsapp parts", code="template_invalid"
            )
        made = await templates.create(self._pool, tenant_id, name, language, category, channel, body, parts=email)
        self._cache.invalidate(tenant_id, name, language)
        return made

    async def list_latest(self, tenant_id: uuid.UUID) -> list[Template]:
        return await templates.list_latest(self._pool, tenant_id)

    async def latest(self, tenant_id: uuid.UUID, name: str, language: str) -> Template:
        found = await templates.latest(self._pool, tenant_id, name, language)
        if found is None:
            raise NotFound("no such template", code="template_not_found")
        return found

    async def delete(self, tenant_id: uuid.UUID, name: str, language: str) -> None:
        if not await templates.delete(self._pool, tenant_id, name, language):
            raise NotFound("no such template", code="template_not_found")
        self._cache.invalidate(tenant_id, name, language)
