"""A client of Meta's Graph API for what Herald does with it: send template messages, submit and
list message templates. One per process; every call names the tenant's own token.

Errors are raised as `GraphError` (Meta answered, with `error.code`) or `GraphUnavailable` (no
answer: connection refused or reset, timeout, a body that is not Meta's). The caller decides
what each means (`herald.whatsapp.codes`).
"""

from __future__ import annotations

from typing import TypeVar

import aiohttp
import msgspec

from herald.whatsapp.codes import Kind, classify
from herald.whatsapp.wire import (
    ErrorResponse,
    ListedTemplate,
    SendRequest,
    SendResponse,
    TemplateCreate,
    TemplateCreated,
    TemplateList,
)

_T = TypeVar("_T")
_ENCODER = msgspec.json.Encoder()
_ERROR = msgspec.json.Decoder(ErrorResponse)
MAX_TEMPLATE_PAGES = 100


class GraphError(Exception):
    """Meta answered with an error body. `kind` and `reason` come from `error.code`."""

    def __init__(self, http_status: int, code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"graph error {code} (HTTP {http_status})")
        self.http_status = http_status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.kind, self.reason = classify(code, http_status)

    @property
    def transient(self) -> bool:
        return self.kind in (Kind.THROTTLED, Kind.RECIPIENT_BUSY, Kind.TENANT_LIMITED, Kind.UNAVAILABLE)


class GraphUnavailable(Exception):
    """No usable answer: the request may or may not have reached Meta."""


class Graph:
    def __init__(self, base_url: str, timeout_seconds: float, connections: int = 64) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (aiohttp binds a session to it).
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def send(self, phone_number_id: str, token: str, request: SendRequest) -> SendResponse:
        return await self._call("POST", f"/{phone_number_id}/messages", token, SendResponse, request)

    async def create_template(self, waba_id: str, token: str, create: TemplateCreate) -> TemplateCreated:
        return await self._call("POST", f"/{waba_id}/message_templates", token, TemplateCreated, create)

    async def list_templates(self, waba_id: str, token: str) -> list[ListedTemplate]:
        """Every template of the account, following Meta's cursor paging."""
        found: list[ListedTemplate] = []
        after: str | None = None
        for _ in range(MAX_TEMPLATE_PAGES):
            query = {"limit": "100", **({"after": after} if after else {})}
            page = await self._call("GET", f"/{waba_id}/message_templates", token, TemplateList, query=query)
            found.extend(page.data)
            cursors = page.paging.cursors if page.paging is not None else None
            if page.paging is None or page.paging.next is None or cursors is None or cursors.after is None:
                break
            after = cursors.after
        return found

    async def _call(
        self,
        method: str,
        path: str,
        token: str,
        answer: type[_T],
        body: msgspec.Struct | None = None,
        query: dict[str, str] | None = None,
    ) -> _T:
        headers = {"authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            headers["content-type"] = "application/json"
            data = _ENCODER.encode(body)
        try:
            async with self._http().request(method, self._base + path, data=data, headers=headers, params=query) as r:
                raw = await r.read()
                status = r.status
                retry_after = r.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GraphUnavailable(type(exc).__name__) from exc
        if 200 <= status < 300:
            try:
                return msgspec.json.decode(raw, type=answer)
            except msgspec.DecodeError as exc:
                raise GraphUnavailable("an answer that is not the Graph API's") from exc
        try:
            error = _ERROR.decode(raw).error
        except msgspec.DecodeError:
            if status >= 500:
                raise GraphUnavailable(f"HTTP {status} without an error body") from None
            raise GraphError(status, -1, f"HTTP {status} without an error body") from None
        raise GraphError(status, error.code, error.message, _seconds(retry_after))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
