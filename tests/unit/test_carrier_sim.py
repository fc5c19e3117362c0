"""The carrier-sim's per-message send ledger stays bounded under `make run`'s millions of sends."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from herald.settings import ProviderSettings
from herald_carrier_sim import app as sim
from herald_carrier_sim.settings import CarrierSimSettings


async def test_the_send_ledger_forgets_the_oldest_ids_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "SENDS_KEPT", 3)
    application = sim.create_app(CarrierSimSettings(latency_ms=0), ProviderSettings())
    async with AsyncTestClient(application) as client:
        for i in range(5):  # no tenant id in the metadata: no receipt is posted
            body = {"to": "+447400123456", "channel": "sms", "body": "b", "metadata": {"message_id": f"m{i}"}}
            assert (await client.post("/v1/messages", json=body)).status_code == 201
        again = {"to": "+447400123456", "channel": "sms", "body": "b", "metadata": {"message_id": "m4"}}
        assert (await client.post("/v1/messages", json=again)).status_code == 201
    assert dict(application.state.sends) == {"m2": 1, "m3": 1, "m4": 2}


@pytest.mark.parametrize("names_wait", [True, False])
async def test_past_its_cap_the_sim_answers_429_throttled_naming_the_wait_if_configured(names_wait: bool) -> None:
    settings = CarrierSimSettings(latency_ms=0, max_per_second=2.0, throttle_retry_after=names_wait)
    application = sim.create_app(settings, ProviderSettings())
    body = {"to": "+447400123456", "channel": "sms", "body": "b", "metadata": {}}
    async with AsyncTestClient(application) as client:
        answers = [await client.post("/v1/messages", json=body) for _ in range(3)]  # a burst of 2 per second
    assert [r.status_code for r in answers] == [201, 201, 429]
    assert answers[2].json()["error"]["code"] == "throttled"
    retry_after = answers[2].headers.get("retry-after")
    if names_wait:
        assert retry_after is not None
        assert 0.05 <= float(retry_after) <= 0.5  # the time to its next token
    else:
        assert retry_after is None


def test_the_carriers_own_receipt_signature_is_what_heralds_verifier_accepts() -> None:
    # Two implementations of the one scheme in docs/security.md: the double's and Herald's.
    from herald import signing

    body = b'{"provider_message_id":"abc","status":"delivered","at_ms":1}'
    header = sim.receipt_signature("s3cret", body, 1_800_000_000)
    assert signing.verify("s3cret", header, body, now=1_800_000_010)
    assert not signing.verify("other", header, body, now=1_800_000_010)
    assert header == signing.sign("s3cret", body, now=1_800_000_000)
