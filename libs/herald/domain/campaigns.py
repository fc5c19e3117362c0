"""Campaigns: one template sent to the rows of a file, and the states a campaign moves through.

    draft --start--> scheduled (send_at ahead) --(its time)--> sending --(every row queued)--> completed
                     sending   (otherwise)
    scheduled | sending --pause--> paused --resume--> scheduled | sending
    draft | scheduled | sending | paused --cancel--> cancelled

`completed` means every row was queued or refused; the counts keep following the messages.
Cancelling stops what is not yet queued, and every queued message a provider does not have yet
(it ends `cancelled`, never billed).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import msgspec

from herald.domain.models import KeyKind
from herald.errors import Conflict, HeraldError

MAX_ROWS = 10_000_000
"""Rows in one campaign's file."""
STATE_CHECK_SECONDS = 1.0
"""How stale a worker's view of a campaign's cancellation may be: `POST .../cancel` answers once
this has passed, so that no worker starts a send of the campaign after the answer."""


class CampaignState(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Action(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class RowOutcome(StrEnum):
    """What became of a campaign's row (`herald_campaign_rows_total`'s `outcome`)."""

    KEPT = "kept"
    REFUSED_AT_UPLOAD = "refused_at_upload"
    QUEUED = "queued"
    REFUSED_AT_SEND = "refused_at_send"


RUNNING = frozenset({CampaignState.SCHEDULED, CampaignState.SENDING})
_FROM: dict[Action, frozenset[CampaignState]] = {
    Action.START: frozenset({CampaignState.DRAFT}),
    Action.PAUSE: RUNNING,
    Action.RESUME: frozenset({CampaignState.PAUSED}),
    Action.CANCEL: frozenset({CampaignState.DRAFT, CampaignState.PAUSED}) | RUNNING,
}


def allowed_from(action: Action) -> frozenset[CampaignState]:
    return _FROM[action]


def after(action: Action, state: CampaignState, send_at: datetime | None, now: datetime) -> CampaignState:
    """The state `action` leads to from `state`. Raises Conflict (`campaign_state`) when it
    does not apply: a problem that names the state, so a client knows why."""
    if state not in _FROM[action]:
        raise Conflict(f"the campaign is {state}: it cannot {action}", code="campaign_state")
    if action is Action.CANCEL:
        return CampaignState.CANCELLED
    if action is Action.PAUSE:
        return CampaignState.PAUSED
    return CampaignState.SCHEDULED if send_at is not None and send_at > now else CampaignState.SENDING


def row_key(campaign_id: uuid.UUID, row: int) -> str:
    """The idempotency key of a campaign's row: producing it again (after a crash) is the same
    message, which the worker then delivers once."""
    return f"campaign:{campaign_id}:{row}"


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Where a campaign's rows are. `rows` are the file's; `rejected` were refused (at upload or
    when produced); `accepted` are queued; the rest follow the messages' statuses."""

    rows: int
    rejected: int
    accepted: int
    scheduled: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    expired: int = 0
    cancelled: int = 0
    """Messages cancelled before a provider had them, and rows a cancellation left unqueued."""


class CampaignSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a campaign is created with."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    key_kind: KeyKind
    """The kind of the key that created it: its messages are sent as that kind's (test: never billed)."""
    name: str
    template_name: str
    template_language: str
    send_at: datetime | None
    ttl_seconds: int | None


class Campaign(CampaignSpec, frozen=True, kw_only=True):
    state: CampaignState
    content_key: int | None
    rows_total: int
    rejected: int
    accepted: int
    next_row: int
    accept_tail: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None

    @property
    def unqueued(self) -> int:
        """Rows not produced yet (valid or not: a refused row is skipped by the producer)."""
        return max(0, self.rows_total - (self.next_row - 1))


class Rejection(msgspec.Struct, frozen=True, array_like=True):
    row: int
    code: str
    field: str | None

    @classmethod
    def of(cls, row: int, error: HeraldError) -> Rejection:
        """Row `row` refused for `error`: its code and the first field it names (never a value)."""
        return cls(row, error.code, error.fields[0].field if error.fields else None)
