"""What each API call sends and what it expects back, shared by `Client` and `AsyncClient`
(which differ only in how they wait), and the retry policy both follow."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from herald_client.errors import HeraldError, error_for
from herald_client.models import (
    BatchAccepted,
    BatchItemResult,
    Cancellation,
    Limits,
    Message,
    MessageAccepted,
    MessageCreate,
    MessagePage,
    Problem,
    Template,
    TemplateCreate,
    Usage,
)

T = TypeVar("T")
MAX_BATCH = 1_000
"""Items per `POST /v1/messages/batch`, the server's limit."""


class Call(msgspec.Struct, Generic[T], frozen=True):
    method: str
    path: str
    answer: type[T] | None
    """What a 2xx decodes to (None: no body)."""
    body: bytes | None = None
    params: dict[str, str] | None = None
    keyed: bool = False
    """Repeating it cannot do anything twice (a GET, a send with an idempotency key), so it may
    be retried after a connection error, when it is unknown whether the server got it."""


class RetryPolicy(msgspec.Struct, frozen=True):
    """429 and 503 are retried after their Retry-After (or a backoff), connection errors only for
    keyed calls; at most `attempts` tries and `budget_seconds` of waiting in all."""

    attempts: int = 4
    budget_seconds: float = 30.0
    backoff_seconds: float = 0.5

    def wait(
        self, attempt: int, waited: float, status: int | None, retry_after: float | None, keyed: bool
    ) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None to give up. `status` None: no answer."""
        if attempt >= self.attempts:
            return None
        if status is None and not keyed:
            return None
        if status is not None and status not in (429, 503):
            return None
        delay = retry_after if retry_after is not None else self.backoff_seconds * 2 ** (attempt - 1)
        return delay if waited + delay <= self.budget_seconds else None


_ENCODER = msgspec.json.Encoder()


def with_key(message: MessageCreate) -> MessageCreate:
    """The message with an idempotency key: the caller's, or a new random one."""
    if message.idempotency_key is not None:
        return message
    return msgspec.structs.replace(message, idempotency_key=f"hc-{uuid.uuid4().hex}")


def send(message: MessageCreate) -> Call[MessageAccepted]:
    return Call("POST", "/v1/messages", MessageAccepted, _ENCODER.encode(with_key(message)), keyed=True)


def batches(messages: Sequence[MessageCreate]) -> list[Call[BatchAccepted]]:
    """One call per 1,000 messages, each message keyed (a chunk retried sends nothing twice)."""
    keyed = [with_key(m) for m in messages]
    return [
        Call("POST", "/v1/messages/batch", BatchAccepted,
             _ENCODER.encode({"messages": keyed[i : i + MAX_BATCH]}), keyed=True)
        for i in range(0, len(keyed), MAX_BATCH)
    ]  # fmt: skip


def merge(answers: Sequence[BatchAccepted]) -> BatchAccepted:
    """The answers of `batches`' calls as one, each result's index the caller's own."""
    results = [
        BatchItemResult(index=chunk * MAX_BATCH + r.index, id=r.id, error=r.error)
        for chunk, answer in enumerate(answers)
        for r in answer.results
    ]
    return BatchAccepted(sum(a.accepted for a in answers), sum(a.rejected for a in answers), results)


def message(message_id: uuid.UUID | str) -> Call[Message]:
    return Call("GET", f"/v1/messages/{uuid.UUID(str(message_id))}", Message, keyed=True)


def cancel(message_id: uuid.UUID | str) -> Call[Cancellation]:
    return Call("DELETE", f"/v1/messages/{uuid.UUID(str(message_id))}", Cancellation, keyed=True)


class Search(msgspec.Struct, frozen=True, omit_defaults=True):
    """The filters of `GET /v1/messages`; every given one must match."""

    status: str | None = None
    reference: str | None = None
    template: str | None = None
    channel: str | None = None
    created_after: datetime | None = None
    """Inclusive; timezone-aware."""
    created_before: datetime | None = None
    """Exclusive; timezone-aware."""


def search(found: Search, limit: int = 100, after: str | None = None) -> Call[MessagePage]:
    params = {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in msgspec.structs.asdict(found).items()
              if v is not None}  # fmt: skip
    params["limit"] = str(limit)
    if after is not None:
        params["after"] = after
    return Call("GET", "/v1/messages", MessagePage, params=params, keyed=True)


def create_template(template: TemplateCreate) -> Call[Template]:
    return Call("POST", "/v1/templates", Template, _ENCODER.encode(template))


def templates() -> Call[list[Template]]:
    return Call("GET", "/v1/templates", list[Template], keyed=True)


def template(name: str, language: str) -> Call[Template]:
    return Call("GET", f"/v1/templates/{name}/{language}", Template, keyed=True)


def delete_template(name: str, language: str) -> Call[None]:
    return Call("DELETE", f"/v1/templates/{name}/{language}", None, keyed=True)


def limits() -> Call[Limits]:
    return Call("GET", "/v1/limits", Limits, keyed=True)


def usage(month: str) -> Call[Usage]:
    return Call("GET", "/v1/usage", Usage, params={"month": month}, keyed=True)


def retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def decode(call: Call[T], status: int, headers: Any, content: bytes) -> T:
    """The 2xx answer as `call.answer`, or the problem raised as its typed exception."""
    if 200 <= status < 300:
        return None if call.answer is None else msgspec.json.decode(content, type=call.answer)  # type: ignore[return-value]
    raise problem(status, headers, content)


def problem(status: int, headers: Any, content: bytes) -> HeraldError:
    try:
        found = msgspec.json.decode(content, type=Problem)
    except msgspec.DecodeError:  # not problem+json: a proxy's page, uvicorn's own 503
        found = Problem(status=status, code=f"http_{status}", detail=content[:200].decode(errors="replace"))
    return error_for(found, retry_after(headers))


def unreachable(call: Call[Any], exc: Exception) -> HeraldError:
    detail = f"{call.method} {call.path}: no answer ({type(exc).__name__})"
    return error_for(Problem(status=503, code="unreachable", detail=detail), None)


class Wait(msgspec.Struct, frozen=True):
    """Try the call again after this many seconds."""

    seconds: float


class Tries(Generic[T]):
    """One call's tries under a retry policy, without I/O: the client reports each outcome and
    gets back the answer, a `Wait` before the next try, or the exception to raise."""

    def __init__(self, call: Call[T], policy: RetryPolicy) -> None:
        self.call = call
        self._policy = policy
        self._attempt = 0
        self._waited = 0.0

    def answered(self, status: int, headers: Any, content: bytes) -> T | Wait:
        self._attempt += 1
        try:
            return decode(self.call, status, headers, content)
        except HeraldError as exc:
            return self._again(exc, status)

    def unanswered(self, exc: Exception) -> Wait:
        self._attempt += 1
        return self._again(unreachable(self.call, exc), None)

    def _again(self, error: HeraldError, status: int | None) -> Wait:
        delay = self._policy.wait(self._attempt, self._waited, status, error.retry_after, self.call.keyed)
        if delay is None:
            raise error
        self._waited += delay
        return Wait(delay)
