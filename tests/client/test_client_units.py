"""The client's pure parts: retry decisions, batch splitting and merging, callback verification.

Callbacks are signed here with the server's own signing code (`herald.signing`), on purpose:
the client must accept exactly what the server sends."""

from __future__ import annotations

import msgspec
import pytest

from herald import signing
from herald_client import InvalidSignature, MessageCreate, RetryPolicy, Status, TemplateRef, _calls, verify_callback
from herald_client.models import BatchAccepted, BatchItemResult, ItemError

POLICY = RetryPolicy(attempts=4, budget_seconds=10, backoff_seconds=0.5)
MESSAGE = MessageCreate(to="+447400123456", channel="sms", template=TemplateRef("otp", "en"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "retry_after", "keyed", "expected"),
    [
        (503, 2.0, False, 2.0),  # 503 means nothing was done (or an ambiguous produce: keyed anyway)
        (429, None, False, 0.5),  # no Retry-After: the backoff
        (None, None, True, 0.5),  # no answer, keyed: safe to repeat
        (None, None, False, None),  # no answer, not keyed: it may have been done
        (422, None, True, None),  # the request is wrong: never retried
        (500, None, True, None),
        (503, 11.0, True, None),  # beyond the budget
    ],
)
def test_what_is_retried(status: int | None, retry_after: float | None, keyed: bool, expected: float | None) -> None:
    assert POLICY.wait(1, 0.0, status, retry_after, keyed) == expected


def test_retries_stop_at_the_attempt_limit_and_the_budget() -> None:
    assert POLICY.wait(3, 0.0, 503, 1.0, True) == 1.0
    assert POLICY.wait(4, 0.0, 503, 1.0, True) is None
    assert POLICY.wait(2, 9.5, 503, 1.0, True) is None


def test_every_send_gets_an_idempotency_key_that_its_retries_keep() -> None:
    call = _calls.send(MESSAGE)
    body = msgspec.json.decode(call.body or b"")
    assert body["idempotency_key"].startswith("hc-")
    assert call.keyed
    mine = msgspec.structs.replace(MESSAGE, idempotency_key="order-7")
    assert msgspec.json.decode(_calls.send(mine).body or b"")["idempotency_key"] == "order-7"


def test_a_big_batch_is_split_by_1000_and_its_results_carry_the_callers_indexes() -> None:
    calls = _calls.batches([MESSAGE] * 2_500)
    sizes = [len(msgspec.json.decode(c.body or b"")["messages"]) for c in calls]
    assert sizes == [1000, 1000, 500]
    keys = {m["idempotency_key"] for c in calls for m in msgspec.json.decode(c.body or b"")["messages"]}
    assert len(keys) == 2_500
    error = ItemError("invalid_recipient", "to: bad")
    answers = [
        BatchAccepted(1, 1, [BatchItemResult(0, error=error), BatchItemResult(999)]),
        BatchAccepted(1, 0, [BatchItemResult(0)]),
    ]
    merged = _calls.merge(answers)
    assert (merged.accepted, merged.rejected) == (2, 1)
    assert [(r.index, r.error) for r in merged.results] == [(0, error), (999, None), (1000, None)]


BODY = (
    b'{"type":"message.status","message_id":"0193b3d2-7c1e-7c3a-9f10-2b8c3c6e7a01",'
    b'"status":"delivered","at":"2026-12-04T10:00:00Z"}'
)  # the shape README.md documents for Herald's callbacks


def test_a_callback_signed_by_the_server_is_verified_and_typed() -> None:
    header = signing.sign("whsec_new", BODY, now=1_800_000_000)
    event = verify_callback(BODY, header, ["whsec_old", "whsec_new"], now=1_800_000_100)  # during a rotation
    assert (event.status, str(event.message_id)) == (Status.DELIVERED, "0193b3d2-7c1e-7c3a-9f10-2b8c3c6e7a01")


@pytest.mark.parametrize(
    ("body", "header", "now"),
    [
        (BODY, signing.sign("whsec_other", BODY, now=1_800_000_000), 1_800_000_000),  # another secret
        (BODY.replace(b"delivered", b"failed"), signing.sign("whsec", BODY, now=1_800_000_000), 1_800_000_000),
        (BODY, signing.sign("whsec", BODY, now=1_800_000_000), 1_800_000_301),  # stale
        (BODY, signing.sign("whsec", BODY, now=1_800_000_400), 1_800_000_000),  # from the future
        (BODY, "", 1_800_000_000),
        (BODY, "t=abc,v1=00", 1_800_000_000),
        (BODY, "t=1800000000,v1=\u00e9", 1_800_000_000),
        (b"not json", signing.sign("whsec", b"not json", now=1_800_000_000), 1_800_000_000),
    ],
)
def test_a_forged_stale_or_malformed_callback_is_refused(body: bytes, header: str, now: int) -> None:
    with pytest.raises(InvalidSignature):
        verify_callback(body, header, "whsec", now=now)
