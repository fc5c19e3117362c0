"""What the SRE's metrics count (issue #31): final statuses from the status projection, API
requests by route, and what a worker holds unsent while its provider stalls."""

from __future__ import annotations

import msgspec
from prometheus_client import REGISTRY

from herald_cli.settings import Settings
from tests.eventually import eventually
from tests.integration.harness import Platform

LABELS = {"channel": "sms", "category": "authentication"}


def _count(status: str) -> float:
    return REGISTRY.get_sample_value("herald_messages_final_total", {"status": status, **LABELS}) or 0.0


async def test_each_final_status_is_counted_once_whoever_reported_it(platform: Platform) -> None:
    """The counter was incremented by the worker only, so deliveries and failures reported by
    providers' receipts (nearly all of them) never reached it: about one delivery in seven."""
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


def _requests(method: str, route: str, status_class: str) -> float:
    labels = {"method": method, "route": route, "status_class": status_class}
    return REGISTRY.get_sample_value("herald_http_requests_total", labels) or 0.0


async def test_api_requests_are_counted_by_route_template_and_status_class(api: Platform) -> None:
    """Issue #31: `herald_http_requests_total` was defined and never incremented: no API rate,
    errors or latency existed. Errors made by a handler, by authentication and by validation
    each count under their route, with their status class."""
    _, auth = await api.tenant_with_key()
    message = "/v1/messages/{message_id}"
    before = {
        "404": _requests("GET", message, "4xx"),
        "201": _requests("POST", "/v1/templates", "2xx"),
        "422": _requests("POST", "/v1/templates", "4xx"),
        "receipt": _requests("POST", "/v1/providers/{provider}/receipts", "4xx"),
    }
    duration_before = REGISTRY.get_sample_value(
        "herald_http_request_duration_seconds_count", {"method": "GET", "route": message}
    ) or 0.0  # fmt: skip
    for _ in range(2):
        missing = await api.http.get("/v1/messages/01a24110-e6cd-7a30-a37a-de6f49e9bd63", headers=auth)
        assert missing.status_code == 404
    unauthenticated = await api.http.get("/v1/messages/01a24110-e6cd-7a30-a37a-de6f49e9bd63")
    assert unauthenticated.status_code == 401
    assert (await api.template(auth, name="hello")) is not None
    invalid = await api.http.post("/v1/templates", headers=auth, json={"name": "x"})
    assert invalid.status_code in (400, 422)
    unsigned = await api.http.post("/v1/providers/carrier-sim/receipts", content=b"{}")
    assert unsigned.status_code == 401
    assert _requests("GET", message, "4xx") - before["404"] == 3  # two 404s and the 401
    assert _requests("POST", "/v1/templates", "2xx") - before["201"] == 1
    assert _requests("POST", "/v1/templates", "4xx") - before["422"] == 1
    assert _requests("POST", "/v1/providers/{provider}/receipts", "4xx") - before["receipt"] == 1
    duration = REGISTRY.get_sample_value(
        "herald_http_request_duration_seconds_count", {"method": "GET", "route": message}
    )  # fmt: skip
    assert duration == duration_before + 3


def _pending() -> float:
    buffered = sum(
        REGISTRY.get_sample_value("herald_worker_buffered_messages", {"category": c}) or 0.0
        for c in ("authentication", "utility", "marketing")
    )
    return buffered + (REGISTRY.get_sample_value("herald_worker_in_flight") or 0.0)


async def test_a_stalled_provider_shows_as_messages_waiting_in_the_worker(settings: Settings) -> None:
    """Issue #31: through a 60 s carrier stall the worker's consumer lag stayed 0 (the messages
    were fetched) and in-flight sat at its cap, so nothing showed the backlog behind it. The
    worker now reports what it holds unsent, by class."""
    two = msgspec.structs.replace(settings, worker=msgspec.structs.replace(settings.worker, max_in_flight=2))
    platform = await Platform(two).start()
    try:
        await _stalled(platform)
    finally:
        await platform.stop()


def _buffered() -> float:
    return REGISTRY.get_sample_value("herald_worker_buffered_messages", {"category": "authentication"}) or 0.0


async def _stalled(platform: Platform) -> None:
    _, auth = await platform.tenant_with_key()
    await platform.template(auth)
    sim = f"http://127.0.0.1:{platform.settings.carrier_sim.port}/v1/sim/outage"
    assert (await platform.http.post(sim, json={"seconds": 4})).status_code == 204
    ids = [(await platform.send(auth, to=f"+4474002000{n:02d}")).json()["id"] for n in range(10, 20)]
    held = await eventually(lambda: _async(_buffered()), lambda n: n >= 5, "messages wait behind the two in flight",
                            seconds=10)  # fmt: skip
    assert held <= len(ids)
    for message_id in ids:  # (the test settings fail a message once its in-process retries are spent)
        assert (await platform.wait_status(auth, message_id, deadline_s=30))["status"] in ("delivered", "failed")
    await eventually(lambda: _async(_pending()), lambda n: n == 0, "the worker holds nothing", seconds=10)


async def _async(value: float) -> float:
    return value
