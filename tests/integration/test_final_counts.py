"""What the dashboard's "Final statuses/s" counts: every message once, from the status projection.

Issue #31: the counter was incremented by the worker only, so deliveries and failures reported by
providers' receipts (nearly all of them) never reached it: about one delivery in seven was
counted. It now counts each message's final status as the projection records it.
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.integration.harness import Platform

LABELS = {"channel": "sms", "category": "authentication"}


def _count(status: str) -> float:
    return REGISTRY.get_sample_value("herald_messages_final_total", {"status": status, **LABELS}) or 0.0


async def test_each_final_status_is_counted_once_whoever_reported_it(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    before = {status: _count(status) for status in ("delivered", "failed")}
    # The carrier-sim: a delivered receipt for most numbers, a failed receipt for ...0002, and a
    # permanent refusal at send time for ...0000 (the worker's own failure).
    numbers = ["+447400190017", "+447400190027", "+447400190037", "+447400190002", "+447400190000"]
    ids = []
    for to in numbers:
        r = await platform.send(auth, to=to)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    finals = [(await platform.wait_status(auth, message_id))["status"] for message_id in ids]
    assert finals == ["delivered", "delivered", "delivered", "failed", "failed"]
    assert {status: _count(status) - before[status] for status in before} == {"delivered": 3, "failed": 2}
