"""The closed catalogue of Herald's Prometheus metrics. Nothing else creates metrics.

Every name starts with `herald_`. Label values come from closed sets (status, class, reason
codes, topic names), never from tenant-supplied text, so cardinality stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

# Request-path latencies: a broker ack on loopback is ~1-5 ms; tails up to seconds when the
# broker is slow or re-electing.
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# End-to-end delivery: sub-second for OTPs, up to minutes under pacing or retries.
_E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

MESSAGES_ACCEPTED = Counter(
    "herald_messages_accepted_total",
    "Messages the broker acknowledged and the API answered 202 for.",
    ["category", "channel"],
)
MESSAGES_REJECTED = Counter(
    "herald_messages_rejected_total",
    "Send requests refused, by problem code.",
    ["code"],
)
PRODUCE_SECONDS = Histogram(
    "herald_produce_seconds",
    "Time from enqueueing records to the broker's acks=all acknowledgement.",
    buckets=_FAST_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "herald_consumer_lag_records",
    "Records behind the partition highwater after the last committed batch, per consumer group.",
    ["group", "topic", "partition"],
)
CONSUMER_BUSY_SECONDS = Gauge(
    "herald_consumer_busy_seconds",
    "How long this process's loop of the consumer group has been on its current batch (0 between"
    " batches). Lag is reported after each batch, so a blocked handler shows here, not in lag.",
    ["group"],
)
IDEMPOTENT_REPEATS = Counter(
    "herald_idempotent_repeats_total",
    "Records skipped by workers because another record already claimed the id.",
)
DLQ_RECORDS = Counter(
    "herald_dlq_records_total",
    "Messages copied to herald.dlq by workers, by kind (permanent, retries_exhausted).",
    ["kind"],
)
# Waits for a shared bucket's token: from a few ms (the next 100 ms chunk) to seconds (a free
# tenant's campaign at 10 msg/s).
_TOKEN_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PACING_WAIT_SECONDS = Histogram(
    "herald_pacing_wait_seconds",
    "How long a tenant with a ready message waited for a token of its rate limit, by tier.",
    ["tier"],
    buckets=_TOKEN_WAIT_BUCKETS,
)
PACED_TOKENS = Counter(
    "herald_pacing_tokens_total",
    "Send tokens taken from tenants' shared rate buckets, by tier (compare with the tier's limit).",
    ["tier"],
)
PROVIDER_CAPACITY_WAIT_SECONDS = Histogram(
    "herald_provider_capacity_wait_seconds",
    "How long a worker with messages ready waited for a token of the provider's capacity"
    " (HERALD_WORKER_PROVIDER_RATE_PER_SECOND), by provider.",
    ["provider"],
    buckets=_TOKEN_WAIT_BUCKETS,
)
PROVIDER_THROTTLE_CUTS = Counter(
    "herald_provider_throttle_cuts_total",
    "Times a worker cut its own send rate to a provider after a 429 (throttled), by provider:"
    " the provider's capacity is lower than Herald was told (HERALD_WORKER_PROVIDER_RATE_PER_SECOND).",
    ["provider"],
)
DUPLICATE_SENDS = Counter(
    "herald_duplicate_sends_total",
    "Messages handed to a provider more than once (a worker crashed between send and commit), as"
    " the status projection detects them from a second provider id; bounded by the in-flight window.",
)
RATE_LIMIT_UTILISATION = Gauge(
    "herald_rate_limit_utilisation_ratio",
    "Per tier, over the last interval: send tokens granted to the tier's active tenants divided by what"
    " their rate limits allowed (1 = sending at the limit). The same cluster-wide value on every worker.",
    ["tier"],
    multiprocess_mode="max",
)
RETRIES_SCHEDULED = Counter(
    "herald_retries_scheduled_total",
    "Messages put on herald.retry after in-process retries ran out, by reason (throttled, busy, ...).",
    ["reason"],
)
IN_FLIGHT = Gauge("herald_worker_in_flight", "Messages currently handed to providers by this worker.")
WORKER_BUFFERED = Gauge(
    "herald_worker_buffered_messages",
    "Messages this worker has fetched and not yet handed to a provider, by class. A stalled provider"
    " shows here (and in in-flight), not in consumer lag: the messages are already fetched.",
    ["category"],
)


class ProviderOutcome(StrEnum):
    """What one attempt at a provider came to, as its health sees it."""

    SUCCESS = "success"
    ERROR = "error"
    """The provider failed it: 5xx, an unreadable answer, no connection."""
    NO_ANSWER = "no_answer"
    """No answer at all (a timeout, a connection dropped after the request went out): the
    provider may have the message, and may be stalled."""
    THROTTLED = "throttled"
    QUOTA = "quota"
    """The account's daily quota is spent: the tenant's volume, not the provider's health."""
    RECIPIENT = "recipient"
    """The recipient's doing: a busy recipient, an invalid or opted-out number."""
    REFUSED = "refused"
    """Any other refusal (content, template, account): the sender's to fix."""


WORKER_OLDEST_BUFFERED_SECONDS = Gauge(
    "herald_worker_oldest_buffered_seconds",
    "Seconds since acceptance of the oldest message this worker has fetched and not yet handed to"
    " a provider (0: none waits): how far behind a stalled provider or a paced backlog is.",
)
PROVIDER_OUTCOMES = Counter(
    "herald_provider_outcomes_total",
    "Provider attempts by outcome (ProviderOutcome: success, error, no_answer, throttled, quota, recipient, refused).",
    ["provider", "outcome"],
)
PROVIDER_STALLS = Counter(
    "herald_provider_stalls_total",
    "Times a worker saw a provider stop answering (an attempt timed out or lost its connection"
    " after the request went out) and went to one attempt at a time until it answered again.",
    ["provider"],
)
PROVIDER_SECONDS = Histogram(
    "herald_provider_seconds",
    "Latency of one provider send call (a call cut by the provider timeout lands above it).",
    ["provider"],
    # Beyond the provider timeout (5 s by default): with the top bucket at the timeout, p99
    # flattened there and a stalled provider looked like a slow one.
    buckets=(*_FAST_BUCKETS, 7.5, 10.0, 30.0),
)
ACCEPTED_TO_SENT_SECONDS = Histogram(
    "herald_accepted_to_sent_seconds",
    "From API acceptance to provider acceptance, by class.",
    ["category"],
    buckets=_E2E_BUCKETS,
)
ACCEPTED_TO_FINAL_SECONDS = Histogram(
    "herald_accepted_to_final_seconds",
    "From API acceptance to the final status as projected (delivered, failed, expired), by class.",
    ["category", "status"],
    buckets=_E2E_BUCKETS,
)
MESSAGES_FINAL = Counter(
    "herald_messages_final_total",
    "Messages reaching a final status (delivered, failed, expired), counted once each by the status"
    " projection, whoever reported it (the worker, a provider's receipt, the receipt deadline), by"
    " channel and class.",
    ["status", "channel", "category"],
)
RECEIPTS = Counter(
    "herald_receipts_total",
    "Provider receipts by outcome: recorded (accepted from the provider), bound (its status event"
    " published), late (it contradicted the message's first final report; kept apart, never the"
    " status), unmatched (no send of Herald's matched it in time: an id Herald never sent through"
    " that provider).",
    ["provider", "outcome"],
)
RECEIPT_TIMEOUTS = Counter(
    "herald_receipt_timeouts_total",
    "Sent messages failed by the sweep because no receipt arrived in time.",
)
STATUS_ROWS = Counter(
    "herald_status_projection_rows_total",
    "Rows written by the status projection sink (kind: message, event).",
    ["kind"],
)
SINK_RECORDS_PARKED = Counter(
    "herald_sink_records_parked_total",
    "Records a sink's handler refused on their own, parked in Postgres (parked_records) so the sink"
    " moves on; `herald parked replay` applies them once the cause is fixed.",
    ["group"],
)
SINK_PARKED_RECORDS = Gauge(
    "herald_sink_parked_records",
    "Records parked in Postgres (parked_records) by consumer group, until `herald parked replay`"
    " applies them or `herald parked discard` gives them up; recounted every few seconds.",
    ["group"],
)
BILLING_RECORDS = Counter(
    "herald_billing_records_total",
    "Billing ledger rows written by the billing sink (outcome: written; deferred: the event waits for"
    " its message row in billing_pending).",
    ["outcome"],
)
BILLING_PENDING_REFUSED = Gauge(
    "herald_billing_pending_refused",
    "Messages whose deferred billing events the database refused at the last settle; they stay in"
    " billing_pending, retried every tick, unbilled until the cause is fixed.",
)
BILLING_PENDING_OLDEST = Gauge(
    "herald_billing_pending_oldest_seconds",
    "Age of the oldest billing event waiting in billing_pending for its message row (0 when none);"
    " hours mean a message the status projection parked or lost, billed only once it is written.",
)
CALLBACK_OUTCOMES = Counter(
    "herald_callback_outcomes_total",
    "Tenant callback attempts by outcome (delivered, refused, http_5xx/429, timeout_or_network).",
    ["outcome"],
)
CALLBACKS_STALE = Counter(
    "herald_callbacks_stale_total",
    "Callbacks never sent because a later status of the same message had already gone to the tenant"
    " (a `sent` held up longer than HERALD_SINKS_CALLBACK_ORDER_HOLD_SECONDS).",
)
CALLBACK_SECONDS = Histogram(
    "herald_callback_seconds",
    "Duration of one callback attempt, including the tenant's response time.",
    buckets=_FAST_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "herald_http_requests_total",
    "API responses by method, route template (e.g. /v1/messages/{message_id}) and status class"
    " (2xx, 4xx, 5xx): the rate and errors of the API and of receipt ingestion.",
    ["method", "route", "status_class"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "herald_http_request_duration_seconds",
    "API response time by method and route template, from the handler's start to its response's start.",
    ["method", "route"],
    buckets=_FAST_BUCKETS,
)
WHATSAPP_WEBHOOKS = Counter(
    "herald_whatsapp_webhooks_total",
    "WhatsApp webhook POSTs by outcome: verified (signed by the app secret of the account they name),"
    " refused (answered 401, nothing recorded: forged, or for no connected account).",
    ["outcome"],
)
WHATSAPP_TEMPLATE_REVIEWS = Counter(
    "herald_whatsapp_template_reviews_total",
    "Changes of a whatsapp template's status by Meta (webhook or sweep), by the new status.",
    ["status"],
)
WHATSAPP_ACCOUNTS_SUSPENDED = Counter(
    "herald_whatsapp_accounts_suspended_total",
    "WhatsApp accounts suspended because Meta refused their token (expired, revoked, account locked):"
    " their messages wait, unsent, until the tenant connects a new token. Alert on any increase.",
)

SMS_ROUTE_ATTEMPTS = Counter(
    "herald_sms_route_attempts_total",
    "SMS attempts through a route's provider (route `GB`, `*`, `tenant:GB`; provider as configured), by"
    " outcome: accepted; failover (certainly not taken: the route's next provider is tried); pinned (the"
    " answer was lost: retried on that provider alone); refused (permanent); skipped (its capacity gate shut:"
    " rate spent or throttling; the next provider took the message); exhausted (no provider took it).",
    ["route", "provider", "outcome"],
)
SMS_PROVIDER_HEALTHY = Gauge(
    "herald_sms_provider_healthy",
    "1 while an sms provider is in rotation in this worker, 0 while it is out after failing (probed back in).",
    ["provider"],
)
SMS_ROUTE_HEALTHY_PROVIDERS = Gauge(
    "herald_sms_route_healthy_providers",
    "Providers of an sms route in rotation in this worker; 0: every provider of the route is failing.",
    ["route"],
)
SMS_CONFIG_VERSION = Gauge(
    "herald_sms_config_version",
    "The version of the sms providers and routes this worker routes by (`sms_config.version`): equal across"
    " workers once a change has reached them all.",
)
SMPP_BINDS = Gauge("herald_smpp_binds", "SMPP sessions this worker holds bound, per provider.", ["provider"])
SUPPRESSED_BEFORE_SEND = Counter(
    "herald_suppressed_before_send_total",
    "Marketing messages failed unsent (recipient_suppressed) because their recipient joined the"
    " tenant's suppression list while they waited, by channel.",
    ["channel"],
)
CAMPAIGN_ROWS = Counter(
    "herald_campaign_rows_total",
    "Campaign rows by what became of them: kept (valid at upload), refused_at_upload, queued"
    " (produced as messages), refused_at_send (suppressed or over the daily limit when produced).",
    ["outcome"],
)
CAMPAIGNS_PRODUCING = Gauge("herald_campaigns_producing", "Campaigns this API process holds the lease of and produces.")
SMS_OPT_OUTS = Counter(
    "herald_sms_opt_outs_total",
    "SMS opt-outs recorded in a tenant's suppression list, by source: stop_reply, provider_opt_out;"
    " unattributed: a STOP reply to a sender no tenant owns (recorded nowhere).",
    ["source"],
)
EMAIL_UNSUBSCRIBES = Counter(
    "herald_email_unsubscribes_total",
    "Recipients newly suppressed by a one-click unsubscribe (RFC 8058) from a marketing email.",
)
EMAIL_COMPLAINT_RATIO = Gauge(
    "herald_email_complaint_ratio",
    "Complaints (ARF abuse reports) over email delivered in the last 24 h, per tenant with at least"
    " 100 delivered and one complaint (bounded: the series follow complaining tenants). Mailbox"
    " providers throttle bulk senders above 0.3%.",
    ["tenant"],
)


class SesAnswer(StrEnum):
    """Amazon SES's answer to one SendEmail, as `EMAIL_SES_ANSWERS` counts it."""

    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    """Throttled, quota, paused, 5xx: SES did not take it."""
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    LOST = "lost"
    """No answer after the request went out: SES may have it."""


EMAIL_SES_ANSWERS = Counter(
    "herald_email_ses_answers_total",
    "Amazon SES's answers to each SendEmail, by class: accepted, transient (throttled, quota,"
    " paused, 5xx: untaken), rejected (4xx), unreachable, lost (no answer after the request went out).",
    ["outcome"],
)
EMAIL_REPORTS = Counter(
    "herald_email_reports_total",
    "Reports that came back to bounce addresses, by kind: delivered, failed (4.x.x: the relay gave"
    " up), hard_bounce (5.x.x), delayed, complained (ARF abuse reports), unreadable, refused"
    " (an address Herald did not mint).",
    ["kind"],
)


class SmtpReply(StrEnum):
    """The relay's answer to one mail handed over, as `EMAIL_SMTP_REPLIES` counts it."""

    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    DROPPED = "dropped"
    """The connection was lost or timed out before an answer."""
    NO_CONNECTION = "no_connection"


EMAIL_SMTP_REPLIES = Counter(
    "herald_email_smtp_replies_total",
    "The relay's answers to each mail handed over, by class: accepted, transient (4xx, retried),"
    " permanent (5xx), dropped (connection lost or timed out before an answer), no_connection (no"
    " connection within the timeout: the relay's connection limit held by other workers).",
    ["outcome"],
)


def every_series(metric: MetricWrapperBase, values: Iterable[str], *leading: str) -> None:
    """Create `metric`'s series for each of `values` (after the `leading` label values), at 0. A
    closed vocabulary's series then exist from the first scrape: no panel is empty before the first
    event, and a rule such as "no success in 5 minutes" reads 0, not an absent series."""
    for value in values:
        metric.labels(*leading, value)


def provider_label(provider: str) -> str:
    """A provider name as a metric label: a tenant's own account (`whatsapp:<waba id>`) counts
    under its kind, so the series stay bounded whatever the number of tenants; a provider the
    operator configured (`sms:<name>`, a handful) under its own name, so that its health shows."""
    kind, _, name = provider.partition(":")
    return kind if kind == "whatsapp" or not name else name


# Which tenant: a bounded label set. Each names at most `SHOWN_TENANTS` tenants (the worst by
# its own measure), so the series stay bounded at 10,000 tenants; a tenant leaving the top
# loses its series.
SHOWN_TENANTS = 10
TENANT_UNDELIVERED = Gauge(
    "herald_tenant_undelivered_messages",
    "Messages of the tenant that ended failed or expired over the last 15 minutes, for the tenants"
    " with the most, as seen by this sinks process (its share of herald.events' partitions: sum by"
    " tenant across processes).",
    ["tenant"],
)
TENANT_MEAN_FINAL_SECONDS = Gauge(
    "herald_tenant_mean_final_seconds",
    "Mean accepted -> delivered seconds of the tenant's messages over the last 15 minutes, for the"
    " slowest tenants with 20 or more delivered, as seen by this sinks process.",
    ["tenant"],
)
TENANT_CALLBACKS_PENDING = Gauge(
    "herald_tenant_callbacks_pending",
    "Status callbacks waiting to reach the tenant's endpoint, for the tenants with the oldest"
    " (from the callback outbox: every sinks process reports the same figure).",
    ["tenant"],
)
TENANT_CALLBACKS_RETRYING = Gauge(
    "herald_tenant_callbacks_retrying",
    "Of those, callbacks the tenant's endpoint has failed at least once (waiting for a retry).",
    ["tenant"],
)
TENANT_CALLBACK_OLDEST_SECONDS = Gauge(
    "herald_tenant_callback_oldest_seconds",
    "Age of the tenant's oldest status callback still waiting to reach its endpoint.",
    ["tenant"],
)
CALLBACKS_PENDING = Gauge(
    "herald_callbacks_pending",
    "Status callbacks waiting to reach tenants' endpoints, all tenants (from the callback outbox).",
)


class Role(StrEnum):
    """The Herald process serving a `/metrics`."""

    API = "api"
    WORKER = "worker"
    SINKS = "sinks"


# An unlabelled metric has its series (at 0) in every process that imports this module; each is
# shown only by the processes that keep it, so the API does not report a worker's in-flight.
# (A labelled one has series only where it is used.)
UNLABELLED_OWNERS: dict[MetricWrapperBase, frozenset[Role]] = {
    PRODUCE_SECONDS: frozenset(Role),
    IDEMPOTENT_REPEATS: frozenset({Role.WORKER}),
    DUPLICATE_SENDS: frozenset({Role.SINKS}),
    IN_FLIGHT: frozenset({Role.WORKER}),
    WORKER_OLDEST_BUFFERED_SECONDS: frozenset({Role.WORKER}),
    RECEIPT_TIMEOUTS: frozenset({Role.SINKS}),
    BILLING_PENDING_REFUSED: frozenset({Role.SINKS}),
    BILLING_PENDING_OLDEST: frozenset({Role.SINKS}),
    CALLBACKS_STALE: frozenset({Role.SINKS}),
    CALLBACK_SECONDS: frozenset({Role.SINKS}),
    WHATSAPP_ACCOUNTS_SUSPENDED: frozenset({Role.WORKER}),
    SMS_CONFIG_VERSION: frozenset({Role.WORKER}),
    CAMPAIGNS_PRODUCING: frozenset({Role.API}),
    EMAIL_UNSUBSCRIBES: frozenset({Role.API}),
    CALLBACKS_PENDING: frozenset({Role.SINKS}),
}


def not_shown_by(role: Role | None) -> frozenset[str]:
    """The families of the unlabelled metrics `role` does not keep (None, a double: all of them)."""
    return frozenset(m._name for m, roles in UNLABELLED_OWNERS.items() if role not in roles)
