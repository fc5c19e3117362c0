"""Herald's problems as exceptions: every one carries `code`, `detail`, the failing fields and,
for 429 and 503, `retry_after` (seconds)."""

from __future__ import annotations

from herald_client.models import FieldError, Problem


class HeraldError(Exception):
    """A problem+json answer from Herald (or, with status 0, no answer at all)."""

    def __init__(self, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(f"{problem.status} {problem.code}: {problem.detail}")
        self.problem = problem
        self.status = problem.status
        self.code = problem.code
        self.detail = problem.detail
        self.fields: list[FieldError] = problem.errors
        self.retry_after = retry_after


class BadRequest(HeraldError):
    """400, 413, 422: the request is wrong; sending it again will not help."""


class Unauthenticated(HeraldError):
    """401: the API key is missing, wrong or revoked."""


class Forbidden(HeraldError):
    """403: e.g. `tenant_suspended`, `verification_required`."""


class NotFound(HeraldError):
    """404: unknown, or another tenant's (Herald does not tell them apart)."""


class RateLimited(HeraldError):
    """429: `rate_limited`, `daily_recipient_limit`, ...; `retry_after` says when."""


class Unavailable(HeraldError):
    """503 (`broker_unavailable`, `database_unavailable`) or no answer: retry, with the same
    idempotency key; the client already did within its budget."""


class InvalidSignature(Exception):
    """A callback whose `Herald-Signature` is missing, malformed, stale or not made with any of
    the given secrets."""


_BY_STATUS: dict[int, type[HeraldError]] = {
    400: BadRequest, 413: BadRequest, 422: BadRequest, 401: Unauthenticated, 403: Forbidden, 404: NotFound,
    429: RateLimited, 503: Unavailable,
}  # fmt: skip


def error_for(problem: Problem, retry_after: float | None) -> HeraldError:
    return _BY_STATUS.get(problem.status, HeraldError)(problem, retry_after)
