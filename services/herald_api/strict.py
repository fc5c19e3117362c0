"""Strict JSON request bodies, for every handler that takes `data`.

Litestar converts request data in msgspec's lax mode (right for query strings, where everything
is a string), so a body with `"ttl_seconds": "60"` would be accepted as 60. The contract is
strict JSON: a string is not a number, `"true"` is not a boolean. This hook decodes the raw body
strictly, against the handler's own `data` type, before the handler runs; unknown fields are
already refused by the Structs themselves (`forbid_unknown_fields`). A body that is not JSON at
all is left to Litestar's parse (400 `malformed_request`).

The decoded value is left where Litestar keeps a request's parsed JSON, so Litestar does not
decode the body a second time: its lax conversion of a value already of the `data` type hands it
through unchanged (msgspec.convert). That place is Litestar's `ScopeState`, an internal API:
should it move, requests fail loudly (the strictness and send tests), not silently.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.utils.scope.state import ScopeState


@functools.cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


async def strict_body(request: Request[Any, Any, Any]) -> None:
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return
    try:
        decoded = _decoder(field.annotation).decode(await request.body())
    except msgspec.ValidationError as exc:
        raise ValidationException(
            detail="Validation failed", extra=[{"key": "data", "message": str(exc), "source": "body"}]
        ) from exc
    except msgspec.DecodeError:
        return
    ScopeState.from_scope(request.scope).json = decoded
