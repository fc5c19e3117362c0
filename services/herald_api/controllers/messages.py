"""Sending and reading messages."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from herald.db import messages
from herald.domain.models import Category, Channel
from herald.errors import NotFound
from herald_api.auth import Principal
from herald_api.schemas import EventOut, MessageAccepted, MessageCreate, MessageOut, TemplateUsed
from herald_api.services import Services


class MessageController(Controller):
    path = "/v1/messages"
    tags = ["messages"]

    @post("/", status_code=202, summary="Send one templated message; 202 once the queue has it")
    async def send(
        self, data: JSONBody[MessageCreate], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> MessageAccepted:
        return MessageAccepted(id=await svc.sender.accept(principal, data))

    @get("/{message_id:uuid}", summary="Status and event timeline of a message")
    async def read(
        self, message_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> MessageOut:
        view = await messages.get(svc.pool, principal.tenant.id, message_id)
        if view is None:
            # Also for another tenant's message: existence is not disclosed.
            raise NotFound("no such message (a just-accepted message appears within moments)", code="message_not_found")
        return MessageOut(
            id=view.id,
            status=view.status,
            channel=Channel(view.channel),
            category=Category(view.category),
            template=TemplateUsed(view.template_name, view.template_language, view.template_version),
            created_at=view.created_at,
            reference=view.reference,
            events=[EventOut(status=e.status, at=e.at, detail=e.detail) for e in view.events],
        )
