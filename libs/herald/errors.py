"""The one error hierarchy. Every error a client can cause is a `HeraldError` with a stable `code`.

The HTTP layer maps these to RFC 9457 problem+json in exactly one place
(`herald_api.problems`); the domain never knows about HTTP beyond the status number it suggests.
Error `detail` strings never contain recipients, bodies or secrets.
"""

from __future__ import annotations

import msgspec


class FieldError(msgspec.Struct, frozen=True):
    """One failing field: a dotted path into the request body (`params.code`, `to`)."""

    field: str
    message: str


class HeraldError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        fields: tuple[FieldError, ...] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.fields = fields
        self.retry_after = retry_after


class InvalidRequest(HeraldError):
    status, code, title = 422, "validation_failed", "The request is not valid"

    @classmethod
    def field(cls, field: str, message: str, *, code: str = "validation_failed") -> InvalidRequest:
        return cls(f"{field}: {message}", code=code, fields=(FieldError(field, message),))


class MalformedRequest(HeraldError):
    status, code, title = 400, "malformed_request", "The request body could not be parsed"


class Unauthenticated(HeraldError):
    status, code, title = 401, "unauthenticated", "Missing or invalid credentials"


class Forbidden(HeraldError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(HeraldError):
    """Also what a tenant sees for another tenant's objects: never 403, so ids leak nothing."""

    status, code, title = 404, "not_found", "Not found"


class Conflict(HeraldError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(HeraldError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(HeraldError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(HeraldError):
    status, code, title = 429, "rate_limited", "Too many requests"


class Unavailable(HeraldError):
    """A dependency (broker, database) is unreachable; safe for the client to retry."""

    status, code, title = 503, "unavailable", "Service temporarily unavailable"
