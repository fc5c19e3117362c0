"""A tenant's templates: created linted, listed, read, deleted; the send path's cache kept true."""

from __future__ import annotations

import uuid

import asyncpg

from herald.db import templates
from herald.domain.models import Category, Channel
from herald.domain.templates import Template, lint
from herald.errors import InvalidRequest, NotFound
from herald_api.services.sending import TemplateCache


class Catalogue:
    def __init__(self, pool: asyncpg.Pool, cache: TemplateCache) -> None:
        self._pool = pool
        self._cache = cache

    async def create(
        self, tenant_id: uuid.UUID, name: str, language: str, category: Category, channel: Channel, body: str
    ) -> Template:
        """A new template, or a new version of `name` + `language`. Raises InvalidRequest
        (`template_invalid`) with every lint problem."""
        if problems := lint(body, channel, category):
            raise InvalidRequest(
                "; ".join(f"{p.field}: {p.message}" for p in problems), code="template_invalid", fields=tuple(problems)
            )
        made = await templates.create(self._pool, tenant_id, name, language, category, channel, body)
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
