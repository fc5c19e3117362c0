"""Provider receipts must be signed; unsigned or tampered ones change nothing."""

from __future__ import annotations

import time
import uuid

import msgspec

from herald import signing
from tests.integration.harness import Platform


def _receipt(message_id: str, tenant_id: str, status: str = "delivered", at_ms: int | None = None) -> bytes:
    at_ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    return msgspec.json.encode({"message_id": message_id, "tenant_id": tenant_id, "provider_message_id": "p",
                                "status": status, "at_ms": at_ms})  # fmt: skip


async def test_unsigned_and_forged_receipts_are_refused(api: Platform) -> None:
    body = _receipt(str(uuid.uuid4()), str(uuid.uuid4()))
    url = "/v1/providers/carrier-sim/receipts"
    r = await api.http.post(url, content=body)
    assert (r.status_code, r.json()["code"]) == (401, "invalid_signature")
    forged = signing.sign("not-the-secret", body)
    r = await api.http.post(url, content=body, headers={"x-provider-signature": forged})
    assert r.status_code == 401
    good = signing.sign(api.settings.provider.receipt_secret, body)
    r = await api.http.post(url, content=body + b" ", headers={"x-provider-signature": good})
    assert r.status_code == 401
    r = await api.http.post("/v1/providers/unknown/receipts", content=body, headers={"x-provider-signature": good})
    assert r.status_code == 404


async def test_signed_receipt_with_bad_status_is_422(api: Platform) -> None:
    body = _receipt(str(uuid.uuid4()), str(uuid.uuid4()), status="sent")
    headers = {"x-provider-signature": signing.sign(api.settings.provider.receipt_secret, body)}
    r = await api.http.post("/v1/providers/carrier-sim/receipts", content=body, headers=headers)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_receipt")


async def test_signed_receipt_with_a_time_no_timestamp_can_hold_is_422(api: Platform) -> None:
    # Accepted, it would reach herald.events and fail every sink that converts it (year 3170843).
    for at_ms in (10**17, -1):
        body = _receipt(str(uuid.uuid4()), str(uuid.uuid4()), at_ms=at_ms)
        headers = {"x-provider-signature": signing.sign(api.settings.provider.receipt_secret, body)}
        r = await api.http.post("/v1/providers/carrier-sim/receipts", content=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_receipt"), at_ms


async def test_a_batch_of_receipts_is_all_or_nothing_and_signed(platform: Platform) -> None:
    tenant_id, auth = await platform.tenant_with_key()
    await platform.template(auth)
    # Accepted but never receipted by the carrier-sim (suffix 0005): the receipts below decide.
    ids = [(await platform.send(auth, to=f"+4474001{i}0005")).json()["id"] for i in range(3)]
    for message_id in ids:
        await platform.wait_status(auth, message_id, {"sent"})
    items = [msgspec.json.decode(_receipt(m, tenant_id)) for m in ids]
    url, secret = "/v1/providers/carrier-sim/receipts/batch", platform.settings.provider.receipt_secret

    bad = msgspec.json.encode({"receipts": [*items[:2], {**items[2], "status": "sent"}]})
    r = await platform.http.post(url, content=bad, headers={"x-provider-signature": signing.sign(secret, bad)})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "receipts[2].status")
    unsigned = msgspec.json.encode({"receipts": items})
    assert (await platform.http.post(url, content=unsigned)).status_code == 401
    for message_id in ids:  # nothing of the refused batch was applied
        assert (await platform.http.get(f"/v1/messages/{message_id}", headers=auth)).json()["status"] == "sent"

    r = await platform.http.post(
        url, content=unsigned, headers={"x-provider-signature": signing.sign(secret, unsigned)}
    )
    assert r.status_code == 202
    for message_id in ids:
        await platform.wait_status(auth, message_id, {"delivered"})
