"""The closed vocabulary of reasons (`herald.domain.reasons`) and where reasons are decided."""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web

from herald.domain.reasons import LetterKind, Reason, receipt_reason
from herald.domain.records import EVENT_DECODER, StatusEventV1
from herald_worker.providers.base import PermanentError, RetryableError
from herald_worker.providers.carrier import CarrierProvider
from tests.unit.fakes import outbound


def test_every_transient_reason_has_its_exhausted_form_and_only_those_do() -> None:
    transient = {r for r in Reason if r.transient}
    assert transient == {
        Reason.THROTTLED, Reason.QUOTA_EXHAUSTED, Reason.RECIPIENT_BUSY,
        Reason.PROVIDER_UNAVAILABLE, Reason.PROVIDER_BAD_RESPONSE,
    }  # fmt: skip
    for reason in transient:
        exhausted = reason.exhausted()
        assert exhausted.retries_exhausted
        assert not exhausted.transient
        assert exhausted.value == f"{reason.value}_retries_exhausted"  # the wire value tenants see
        assert LetterKind.of(exhausted) is LetterKind.RETRIES_EXHAUSTED
    for reason in set(Reason) - transient:
        with pytest.raises(KeyError):
            reason.exhausted()
    assert LetterKind.of(Reason.OPTED_OUT) is LetterKind.PERMANENT


def test_a_retryable_error_takes_only_a_transient_reason() -> None:
    RetryableError(Reason.THROTTLED, 1.0)
    with pytest.raises(ValueError, match="opted_out"):
        RetryableError(Reason.OPTED_OUT)


def test_a_receipt_names_a_reason_only_when_it_reports_a_failure() -> None:
    assert receipt_reason(False, "whatever") is None
    assert receipt_reason(True, "opted_out") is Reason.OPTED_OUT
    assert receipt_reason(True, "undeliverable") is Reason.UNDELIVERABLE
    assert receipt_reason(True, "EC_0x0B") is Reason.UNDELIVERABLE  # an operator's code is not ours
    assert receipt_reason(True, None) is Reason.UNDELIVERABLE


def test_an_event_with_a_reason_outside_the_vocabulary_does_not_decode() -> None:
    event = msgspec.json.encode({
        "schema": "herald.status.v1", "message_id": "0190a0e8-0000-7000-8000-000000000001",
        "tenant_id": "0190a0e8-0000-7000-8000-000000000002", "status": "failed", "at_ms": 1_800_000_000_000,
        "reason": "carrier_said_so",
    })  # fmt: skip
    with pytest.raises(msgspec.ValidationError, match="reason"):
        EVENT_DECODER.decode(event)
    ok = EVENT_DECODER.decode(event.replace(b"carrier_said_so", b"opted_out"))
    assert isinstance(ok, StatusEventV1)
    assert ok.reason is Reason.OPTED_OUT


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": {"code": "opted_out"}}, Reason.OPTED_OUT),
        (400, {"error": {"code": "invalid_number"}}, Reason.INVALID_NUMBER),
        (400, {"error": {"code": "content_blocked"}}, Reason.REJECTED),
        (404, None, Reason.REJECTED),
        (409, {"error": {"code": "recipient_busy"}}, Reason.RECIPIENT_BUSY),
        (429, {"error": {"code": "quota_exhausted"}}, Reason.QUOTA_EXHAUSTED),
        (429, {"error": {"code": "throttled"}}, Reason.THROTTLED),
        (503, None, Reason.PROVIDER_UNAVAILABLE),
    ],
)
async def test_the_carrier_adapter_maps_every_answer_onto_the_vocabulary(
    status: int, body: dict[str, object] | None, expected: Reason
) -> None:
    # A real HTTP server answering as the carrier's error contract does (herald_carrier_sim/app.py's
    # docstring: `{"error": {"code", "message"}}`), including codes the adapter does not know.
    async def answer(_: web.Request) -> web.Response:
        return web.json_response(body, status=status) if body is not None else web.Response(status=status)

    app = web.Application()
    app.router.add_post("/v1/messages", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    provider = CarrierProvider(f"http://127.0.0.1:{port}", timeout=5.0, max_connections=2)
    try:
        with pytest.raises((PermanentError, RetryableError)) as raised:
            await provider.send(outbound())
        assert raised.value.reason is expected
        assert isinstance(raised.value, RetryableError) == expected.transient
    finally:
        await provider.close()
        await runner.cleanup()
