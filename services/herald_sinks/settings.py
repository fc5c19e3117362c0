"""The sinks' settings section (`HERALD_SINKS_*`) and what a sinks process reads."""

from __future__ import annotations

from typing import Protocol

import msgspec

from herald.settings import (
    CallbackSettings,
    Shared,
)


class SinkSettings(msgspec.Struct, frozen=True):
    batch_max_records: int = 2000
    batch_wait_seconds: float = 0.1
    """After a batch smaller than batch_max_records, wait this long before the next, so records
    pile up into fewer, larger transactions and broker fetches (a trickle of small batches cost
    the broker and Postgres about a third more per message on the 2-core bench). The status
    projection and callbacks lag by at most this much more."""
    fetch_max_wait_ms: int = 100
    """The sinks' broker long-poll (the worker keeps `kafka.fetch_max_wait_ms`, 20 ms, for OTPs:
    Tansu does not answer a waiting fetch early when records arrive)."""
    commit_interval_seconds: float = 1.0
    """Offsets are committed at most this often; a crash replays what was handled since, which
    the idempotent sinks absorb."""
    drain_seconds: float = 20.0
    """On SIGTERM, each group's current batch gets this long to finish before what was handled
    is committed (all groups drain at once); a batch cut off is read again by the next owner."""
    receipt_timeout_seconds: float = 72 * 3600
    """A `sent` message with no receipt after this long becomes `failed` (receipt_timeout).
    72 h is the longest SMS validity period carriers commonly apply."""
    sweep_interval_seconds: float = 60.0
    receipt_sweep_seconds: float = 5.0
    """How often the sinks bind every provider receipt still waiting for its send
    (`herald_sinks/receipts.py`). Receipts normally bind at once, when the API records them or
    when the status sink records their send; the sweep is for what a crash or a broker outage
    left waiting, and for receipts bound by their echoed `callback_data`."""
    receipt_unmatched_after_seconds: float = 600.0
    """A receipt that matches no send of Herald's for this long is set aside as `unmatched`
    (`herald_receipts_total{outcome="unmatched"}`): the sweep stops reading it, and a send recorded
    later still binds it. A receipt for a send whose `sent` event was lost binds by its echoed
    message id only within this time."""
    callback_timeout_seconds: float = 5.0
    callback_per_tenant_in_flight: int = 4
    """Callback POSTs in flight per tenant across every sinks process (leased rows count): a
    slow or failing endpoint holds at most this many, and other tenants' callbacks go on."""
    callback_retry_hours: float = 24.0
    callback_poll_seconds: float = 0.1
    callback_order_hold_seconds: float = 10.0
    """How long a receipt's callback (`delivered`, `read`, a provider's `failed`) waits for its
    message's `sent` to be recorded, so that the tenant gets `sent` first. A `sent` held up
    longer (a worker restart between the provider's answer and the event) finds the receipt's
    callback gone out and is not sent at all (`herald.db.callbacks`)."""
    callback_keep_sent_seconds: float = 600.0
    """How long a delivered callback row is kept (without its payload): a `sent` for its
    message's receipt to find, any for a stale or replayed event of its message to be recognised.
    A receipt recorded later than that (the callbacks sink lagging by minutes) waits out the hold."""
    parked_report_seconds: float = 15.0
    """How often the parked records are recounted for `herald_sink_parked_records` (a replay or
    discard runs in another process)."""
    complaint_report_seconds: float = 60.0
    """How often each tenant's email complaint rate over the last day is recomputed."""
    callback_report_seconds: float = 15.0
    """How often the callback backlog per tenant is read from the outbox (and the tenant board
    exported when no status came)."""
    billing_settle_seconds: float = 2.0
    """How often billable events that arrived before their message row are settled."""
    metrics_host: str = "127.0.0.1"
    """Where /metrics, /healthz and /readyz listen (0.0.0.0 in a container)."""
    metrics_port: int = 0


class SinksConfig(Shared, Protocol):
    """What a sinks process reads: its section beside the `Shared` ones
    (`herald_cli.settings.Settings` composes them all)."""

    @property
    def callbacks(self) -> CallbackSettings: ...
    @property
    def sinks(self) -> SinkSettings: ...
