"""`Client` (blocking) and `AsyncClient`: the same calls and the same retries
(`herald_client._calls`: what to send, what comes back, when to try again); they differ only in
how they wait."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from herald_client import _calls
from herald_client._calls import Call, RetryPolicy, Search, Tries, Wait
from herald_client.models import (
    BatchAccepted,
    Cancellation,
    Limits,
    Message,
    MessageAccepted,
    MessageCreate,
    MessageSummary,
    Template,
    TemplateCreate,
    Usage,
)

T = TypeVar("T")
_TRANSPORT_ERRORS = (httpx.TransportError,)


def _headers(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}", "content-type": "application/json", "user-agent": "herald-client/0.4"}


class Client:
    """Blocking client. `Client(base_url, api_key)`; use it as a context manager or `close()` it."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:  # fmt: skip
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = _headers(api_key)
        self._retry = retry or RetryPolicy()

    def send(self, message: MessageCreate) -> MessageAccepted:
        return self._run(_calls.send(message))

    def send_batch(self, messages: Sequence[MessageCreate]) -> BatchAccepted:
        """Any number of messages, 1,000 per request; results carry the caller's indexes."""
        return _calls.merge([self._run(call) for call in _calls.batches(messages)])

    def message(self, message_id: uuid.UUID | str) -> Message:
        return self._run(_calls.message(message_id))

    def cancel(self, message_id: uuid.UUID | str) -> Cancellation:
        """Cancel a scheduled message, or a queued one before a provider has it (409 after)."""
        return self._run(_calls.cancel(message_id))

    def messages(self, found: Search | None = None, *, page_size: int = 100) -> Iterator[MessageSummary]:
        """The tenant's messages matching `found`, newest first, fetched a page at a time as
        the iteration goes (a listing begun is not disturbed by messages sent meanwhile)."""
        after: str | None = None
        while True:
            page = self._run(_calls.search(found or Search(), page_size, after))
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def create_template(self, template: TemplateCreate) -> Template:
        return self._run(_calls.create_template(template))

    def templates(self) -> list[Template]:
        return self._run(_calls.templates())

    def template(self, name: str, language: str) -> Template:
        return self._run(_calls.template(name, language))

    def delete_template(self, name: str, language: str) -> None:
        self._run(_calls.delete_template(name, language))

    def limits(self) -> Limits:
        return self._run(_calls.limits())

    def usage(self, month: str) -> Usage:
        return self._run(_calls.usage(month))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _run(self, call: Call[T]) -> T:
        tries = Tries(call, self._retry)
        while True:
            try:
                r = self._http.request(
                    call.method, call.path, content=call.body, params=call.params, headers=self._headers
                )
                result = tries.answered(r.status_code, r.headers, r.content)
            except _TRANSPORT_ERRORS as exc:
                result = tries.unanswered(exc)
            if not isinstance(result, Wait):
                return result
            time.sleep(result.seconds)


class AsyncClient:
    """The asyncio client: `async with AsyncClient(base_url, api_key) as herald: ...`."""

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = 10.0, retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:  # fmt: skip
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._headers = _headers(api_key)
        self._retry = retry or RetryPolicy()

    async def send(self, message: MessageCreate) -> MessageAccepted:
        return await self._run(_calls.send(message))

    async def send_batch(self, messages: Sequence[MessageCreate]) -> BatchAccepted:
        """Any number of messages, 1,000 per request; results carry the caller's indexes."""
        return _calls.merge([await self._run(call) for call in _calls.batches(messages)])

    async def message(self, message_id: uuid.UUID | str) -> Message:
        return await self._run(_calls.message(message_id))

    async def cancel(self, message_id: uuid.UUID | str) -> Cancellation:
        """As `Client.cancel`."""
        return await self._run(_calls.cancel(message_id))

    async def messages(self, found: Search | None = None, *, page_size: int = 100) -> AsyncIterator[MessageSummary]:
        """As `Client.messages`."""
        after: str | None = None
        while True:
            page = await self._run(_calls.search(found or Search(), page_size, after))
            for item in page.items:
                yield item
            if page.next is None:
                return
            after = page.next

    async def create_template(self, template: TemplateCreate) -> Template:
        return await self._run(_calls.create_template(template))

    async def templates(self) -> list[Template]:
        return await self._run(_calls.templates())

    async def template(self, name: str, language: str) -> Template:
        return await self._run(_calls.template(name, language))

    async def delete_template(self, name: str, language: str) -> None:
        await self._run(_calls.delete_template(name, language))

    async def limits(self) -> Limits:
        return await self._run(_calls.limits())

    async def usage(self, month: str) -> Usage:
        return await self._run(_calls.usage(month))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.aclose()

    async def _run(self, call: Call[T]) -> T:
        tries = Tries(call, self._retry)
        while True:
            try:
                r = await self._http.request(
                    call.method, call.path, content=call.body, params=call.params, headers=self._headers
                )
                result = tries.answered(r.status_code, r.headers, r.content)
            except _TRANSPORT_ERRORS as exc:
                result = tries.unanswered(exc)
            if not isinstance(result, Wait):
                return result
            await asyncio.sleep(result.seconds)
