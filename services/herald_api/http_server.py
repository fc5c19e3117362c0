"""How the API is served: uvicorn with a read deadline per request and a connection cap.

uvicorn bounds idle keep-alive connections but not a request that arrives slowly: a client
sending one header byte every few seconds (slowloris) held a socket for as long as it liked, and
1,500 such sockets were held for 40 s and more in the security review (issue #29, finding 8).
`DeadlinedHttpTools` closes a connection whose request (headers and body) has not fully arrived
`read_timeout_seconds` after it began; `limit_concurrency` answers 503 beyond
`api.max_connections` connections per process. A reverse proxy in front should still buffer
requests and cap connections per client (docs/security.md).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from herald_api.settings import ApiSettings, CampaignSettings

UPLOADS = re.compile(r"^/v1/campaigns/[^/]+/recipients$")
"""Requests whose body may take minutes (a campaign's file): bound by idleness instead."""


class DeadlinedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline from a request's first byte (or the
    connection's start) to its last. The deadline is per process, set once from the settings
    (`configure`), because uvicorn builds protocols from a class it may pickle to its workers."""

    read_timeout_seconds: ClassVar[float] = 15.0
    upload_idle_seconds: ClassVar[float] = 30.0

    @classmethod
    def configure(cls, api: ApiSettings, campaigns: CampaignSettings) -> None:
        cls.read_timeout_seconds = api.request_read_timeout_seconds
        cls.upload_idle_seconds = campaigns.upload_idle_seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_deadline: asyncio.TimerHandle | None = None
        self._uploading = False
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._uploading = False
        if self._read_deadline is None:  # a keep-alive connection's next request
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # An upload's headers came within the deadline; its body is then cut only when it stalls.
        if self.scope["method"] == "PUT" and UPLOADS.match(self.scope["path"]):
            self._uploading = True
            self._disarm()
            self._arm(self.upload_idle_seconds)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._uploading:
            self._disarm()
            self._arm(self.upload_idle_seconds)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float | None = None) -> None:
        self._read_deadline = self.loop.call_later(seconds or self.read_timeout_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(api: ApiSettings, campaigns: CampaignSettings) -> dict[str, Any]:
    """The API's uvicorn options beyond host and port (the CLI and the test harness share them)."""
    DeadlinedHttpTools.configure(api, campaigns)
    return {
        "http": DeadlinedHttpTools,
        "limit_concurrency": api.max_connections or None,
        "timeout_keep_alive": 5,
    }
