"""The ceiling for single-message accept: Litestar + msgspec, a Struct body, 202 with an id.

Same server settings as `herald api` (uvicorn, uvloop, httptools, no access log, the garbage
collector set as `herald.runtime.collect_garbage_rarely` sets it); no auth, no validation
beyond decoding, no broker. Served by loadtests/ingest.py in the same run.
"""

from __future__ import annotations

import uuid

import msgspec
from litestar import Litestar, post
from litestar.params import JSONBody

from herald.runtime import collect_garbage_rarely


class Ref(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    language: str


class Body(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    channel: str
    template: Ref
    params: dict[str, str] = msgspec.field(default_factory=dict)


class Accepted(msgspec.Struct):
    id: uuid.UUID
    status: str = "accepted"


@post("/v1/messages", status_code=202)
async def accept(data: JSONBody[Body]) -> Accepted:
    return Accepted(id=uuid.uuid4())


app = Litestar([accept], openapi_config=None, logging_config=None)
collect_garbage_rarely()
