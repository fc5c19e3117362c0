"""The one place where errors become HTTP: RFC 9457 application/problem+json.

Every response body for an error has `type`, `title`, `status`, `detail` and a stable `code`;
validation problems add `errors: [{field, message}]`. Unexpected exceptions are logged with a
traceback and answered with a generic 500 that reveals nothing.
"""

from __future__ import annotations

import logging
import re

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from herald import metrics
from herald.db.pool import TRANSIENT_ERRORS
from herald.errors import FieldError, HeraldError, Unavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://herald.dev/problems/"


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


def _response(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    body = Problem(type=TYPE_BASE + code, title=title, status=status, detail=detail, code=code, errors=errors or [])
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _count_rejected_send(request: Request, code: str) -> None:  # type: ignore[type-arg]
    if request.url.path.startswith("/v1/messages") and request.method == "POST":
        metrics.MESSAGES_REJECTED.labels(code).inc()


def _herald(request: Request, exc: HeraldError) -> Response[Problem]:  # type: ignore[type-arg]
    _count_rejected_send(request, exc.code)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return _response(exc.status, exc.code, exc.title, exc.detail, list(exc.fields), headers)


_AT = re.compile(r"at `\$\.?(?:data\.?)?([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def field_from_message(message: str, location: str = "") -> str:
    """The dotted field a msgspec validation message points at (`$.params.code` -> `params.code`).

    `location` is the path when the caller already split it off the message: Litestar does, and
    passes it as the error's `key` (prefixed `data` for the body).
    """
    if location == "data" or location.startswith("data."):
        location = location.removeprefix("data").lstrip(".")
    path = at.group(1) if (at := _AT.search(message)) else location
    if (unknown := _UNKNOWN.search(message)) and (name := unknown.group(1)):
        # The unknown key as sent, even one made of dots (hypothesis found `.` giving "").
        return f"{path}.{name}" if path else name
    return path or "body"


def _field_errors(exc: ValidationException) -> list[FieldError]:
    return [
        FieldError(
            field=field_from_message(str(item.get("message", "")), str(item.get("key") or "")),
            message=str(item.get("message", "invalid")).split(" - at ")[0],
        )
        for item in (exc.extra if isinstance(exc.extra, list) else [])
    ]


_MISSING_PARAMETER = re.compile(r"^Missing required \w+ parameter '([^']+)'")


def _validation(request: Request, exc: ValidationException) -> Response[Problem]:  # type: ignore[type-arg]
    errors = _field_errors(exc)
    if not errors and (missing := _MISSING_PARAMETER.match(str(exc.detail))):
        # A required query/path/header parameter is absent: Litestar names it only in the text.
        errors = [FieldError(field=missing.group(1), message="required")]
    _count_rejected_send(request, "validation_failed" if errors else "malformed_request")
    if not errors:
        # Litestar raises ValidationException without field details when the body is not JSON.
        return _response(400, "malformed_request", "The request body could not be parsed", "the body is not valid JSON")
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return _response(422, "validation_failed", "The request is not valid", detail, errors)


_HTTP_CODES = {
    400: ("malformed_request", "Bad request"),
    401: ("unauthenticated", "Missing or invalid credentials"),
    404: ("route_not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _http(request: Request, exc: HTTPException) -> Response[Problem]:  # type: ignore[type-arg]
    status = exc.status_code
    code, title = _HTTP_CODES.get(status, (f"http_{status}", "Error"))
    if status >= 500:
        # Types, not messages: what failed and where is enough to find it, and a message may
        # carry a value from the request.
        cause = exc.__cause__ or exc.__context__
        log.error("http error", extra={
            "status": status, "path": request.url.path, "error": type(exc).__name__,
            "cause": None if cause is None else type(cause).__name__,
        })  # fmt: skip
        return _response(status, code, title, "the server could not handle the request")
    headers = dict(exc.headers or {})
    return _response(status, code, title, str(exc.detail), headers=headers or None)


def _database_unreachable(request: Request, exc: Exception) -> Response[Problem]:  # type: ignore[type-arg]
    # Wherever the request needed the database: a key lookup, a template, the hour's content key
    # or the daily-limit reservation, all before anything is produced: nothing was queued.
    log.warning("database unreachable", extra={"path": request.url.path, "error": type(exc).__name__})
    return _herald(
        request, Unavailable("the database did not answer; retry", code="database_unavailable", retry_after=1)
    )


def _too_deep(request: Request, exc: RecursionError) -> Response[Problem]:  # type: ignore[type-arg]
    # msgspec decodes untyped JSON (a batch's items) recursively: a body nested thousands deep is
    # the client's malformed input, not a server failure, and is not worth a traceback.
    log.warning("request body nested too deeply", extra={"path": request.url.path})
    _count_rejected_send(request, "malformed_request")
    return _response(400, "malformed_request", "The request body could not be parsed", "the body is nested too deeply")


def _unexpected(request: Request, exc: Exception) -> Response[Problem]:  # type: ignore[type-arg]
    log.exception("unhandled error", extra={"path": request.url.path})
    _count_rejected_send(request, "internal_error")
    return _response(500, "internal_error", "Internal server error", "the server failed; it has been logged")


HANDLERS: ExceptionHandlersMap = {
    HeraldError: _herald,
    ValidationException: _validation,
    HTTPException: _http,
    **dict.fromkeys(TRANSIENT_ERRORS, _database_unreachable),
    RecursionError: _too_deep,
    Exception: _unexpected,
}
