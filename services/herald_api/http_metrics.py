"""RED metrics of the API (`herald_http_requests_total`, `herald_http_request_duration_seconds`).

An application-level ASGI middleware: Litestar runs it after routing (the route template is in
the scope) around every route's handler, guards and route middleware. A handler's error arrives
here as the problem response Litestar's inner exception handler made of it; an error raised by
route middleware (authentication) arrives as the exception, counted by its HTTP status. A path
that matches no route never reaches a route's middleware, so it is not counted here.
"""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from herald import metrics
from herald.errors import HeraldError


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, HeraldError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


def http_metrics(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []
        method = str(scope.get("method", "?"))

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start" and not status:
                status.append(message["status"])
                metrics.HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
            await send(message)

        route = str(scope.get("path_template") or "unmatched")
        try:
            await app(scope, receive, observed)
        except BaseException as exc:
            if not status:
                status.append(_status_of(exc))
                metrics.HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
            raise
        finally:
            metrics.HTTP_REQUESTS.labels(method, route, f"{(status or [500])[0] // 100}xx").inc()

    return middleware
