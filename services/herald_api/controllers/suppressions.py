"""The tenant's suppression list (`herald.domain.suppressions`: who gets no marketing, and why)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream

from herald.domain.models import Channel
from herald.domain.suppressions import ENTRY_ID, Entry, SuppressionReason, entry
from herald.errors import InvalidRequest
from herald_api.auth import TENANT_AUTH, Principal
from herald_api.deps import Services
from herald_api.downloads import attachment
from herald_api.schemas import ImportOut, SuppressionIn, SuppressionOut, SuppressionPage

EntryId = Annotated[str, Parameter(pattern=ENTRY_ID, description="An entry's `id`")]
# Litestar drops a Parameter's constraints from `Annotated[...] | None`, so the optional cursor
# carries its pattern inside the Annotated.
Cursor = Annotated[str | None, Parameter(pattern=ENTRY_ID, description="The previous page's `next`")]


def _entry(data: SuppressionIn) -> Entry:
    return entry(data.channel, data.recipient)


def _out(found: object) -> SuppressionOut:
    return msgspec.convert(found, SuppressionOut, from_attributes=True)


class SuppressionController(Controller):
    path = "/v1/suppressions"
    tags = ["suppressions"]
    middleware = [TENANT_AUTH]

    @get("/", summary="The suppression list, a page at a time (`after`: the previous page's `next`)")
    async def list_entries(
        self,
        principal: NamedDependency[Principal],
        svc: NamedDependency[Services],
        channel: FromQuery[Channel | None] = None,
        after: FromQuery[Cursor] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=1000)]] = 100,
    ) -> SuppressionPage:
        items, following = await svc.suppressions.page(principal.tenant.id, channel, after, limit)
        return SuppressionPage(items=[_out(s) for s in items], next=following)

    @post("/", status_code=201, summary="Suppress a recipient on a channel (201 new; 200 already, unchanged)")
    async def add(
        self, data: JSONBody[SuppressionIn], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> Response[SuppressionOut]:
        found, created = await svc.suppressions.add(principal.tenant.id, _entry(data), SuppressionReason.ADDED)
        return Response(_out(found), status_code=201 if created else 200)

    @post("/lookup", status_code=200, summary="Whether a recipient is suppressed on a channel (404 if not)")
    async def lookup(
        self, data: JSONBody[SuppressionIn], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> SuppressionOut:
        return _out(await svc.suppressions.lookup(principal.tenant.id, _entry(data)))

    @delete("/{entry_id:str}", status_code=204, summary="Lift a suppression (its marketing may be sent again)")
    async def remove(
        self, entry_id: FromPath[EntryId], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> None:
        await svc.suppressions.remove(principal.tenant.id, entry_id)

    @post(
        "/import",
        status_code=200,
        summary="Import a CSV (`channel,recipient` header); all or nothing",
        description="Every invalid row is reported (`rows[i].recipient`, data rows from 0) and nothing is"
        " imported. Send `content-type: text/csv`.",
    )
    async def import_csv(self, request: Request[Principal, None, State], svc: NamedDependency[Services]) -> ImportOut:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "text/csv":
            raise InvalidRequest.field("content-type", "must be text/csv", code="invalid_csv")
        raw = await request.body()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidRequest.field("body", "is not UTF-8", code="invalid_csv") from None
        done = await svc.suppressions.import_csv(request.user.tenant.id, text)
        return ImportOut(rows=done.rows, added=done.added)

    @get("/export", summary="The whole list as CSV (id, channel, hint, reason, created_at); no recipients in clear")
    async def export_csv(self, principal: NamedDependency[Principal], svc: NamedDependency[Services]) -> Stream:
        return Stream(
            svc.suppressions.export_csv(principal.tenant.id), media_type="text/csv",
            headers=attachment("suppressions.csv"),
        )  # fmt: skip
