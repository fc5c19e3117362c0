"""Bad input gets a clear problem+json with a code and the field, and changes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.integration.harness import Platform

GOOD: dict[str, Any] = {
    "to": "+447400123456",
    "channel": "sms",
    "template": {"name": "otp", "language": "en"},
    "params": {"code": "123456"},
}


def _problem(r: Any, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"template": {"name": "nope", "language": "en"}}, 404, "template_not_found", None),
        ({"params": {}}, 422, "params_missing", "params.code"),
        ({"params": {"code": "1", "extra": "2"}}, 422, "params_invalid", "params.extra"),
        ({"to": "+4474001"}, 422, "invalid_recipient", "to"),
        ({"to": "07911123456"}, 422, "invalid_recipient", "to"),
        ({"to": 447911123456}, 422, "validation_failed", "to"),
        ({"channel": "fax"}, 422, "validation_failed", "channel"),
        ({"channel": "whatsapp"}, 422, "channel_mismatch", "channel"),
        ({"surprise": True}, 422, "validation_failed", "surprise"),
        ({"ttl_seconds": 0}, 422, "validation_failed", "ttl_seconds"),
        ({"ttl_seconds": "60"}, 422, "validation_failed", "ttl_seconds"),  # strict JSON: no lax coercion
        ({"params": {"code": "x" * 1001}}, 422, "params_invalid", "params.code"),
    ],
)
async def test_bad_send_is_rejected_with_code_and_field(
    api: Platform, change: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    _, auth = await api.tenant_with_key()
    await api.template(auth)
    r = await api.http.post("/v1/messages", headers=auth, json={**GOOD, **change})
    _problem(r, status, code, field)


async def test_every_body_is_strict_json(api: Platform) -> None:
    """Not only sends: a string is not a boolean or a number anywhere in the API."""
    r = await api.http.post(
        "/v1/admin/tenants", headers=api.admin, json={"name": "A", "tier": "free", "verified": "true"}
    )
    _problem(r, 422, "validation_failed", "verified")
    tenant = await api.tenant()
    r = await api.http.patch(
        f"/v1/admin/tenants/{tenant['id']}", headers=api.admin, json={"rate_limit_per_second": "50"}
    )
    _problem(r, 422, "validation_failed", "rate_limit_per_second")
    r = await api.http.get(f"/v1/admin/tenants/{tenant['id']}", headers=api.admin)
    assert r.json()["rate_limit_per_second"] is None  # nothing changed


async def test_rejected_requests_change_nothing(platform: Platform) -> None:
    tenant_id, auth = await platform.tenant_with_key()
    await platform.template(auth)
    for bad in ({"params": {}}, {"to": "+1"}, {"template": {"name": "x", "language": "en"}}):
        assert (await platform.http.post("/v1/messages", headers=auth, json={**GOOD, **bad})).status_code >= 400
    good = await platform.send(auth)
    await platform.wait_status(auth, good.json()["id"])
    # Topics are read in order per partition and the good message is projected: had any rejected
    # request been produced, the sink would have projected it by now too (same recipient key).
    conn = await asyncpg.connect(platform.settings.database.url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM messages WHERE tenant_id = $1::uuid", tenant_id)
    finally:
        await conn.close()
    assert count == 1


async def test_protocol_level_errors_are_problems_not_500(api: Platform) -> None:
    _, auth = await api.tenant_with_key()
    h = {**auth, "content-type": "application/json"}
    _problem(await api.http.post("/v1/messages", headers=h, content=b'{"to":'), 400, "malformed_request")
    _problem(await api.http.post("/v1/messages", headers=h, content=b"x" * (1024 * 1024 + 1)), 413, "payload_too_large")
    _problem(await api.http.get("/v1/nothing-here", headers=auth), 404, "route_not_found")
    _problem(await api.http.put("/v1/messages", headers=auth), 405, "method_not_allowed")
    _problem(await api.http.get("/v1/messages/not-a-uuid", headers=auth), 404, "route_not_found")
    _problem(await api.http.post("/v1/messages", json=GOOD), 401, "missing_credentials")
    _problem(
        await api.http.post("/v1/messages", json=GOOD, headers={"authorization": "Bearer hk_x"}), 401, "invalid_api_key"
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("", "template_invalid"),
        ("Hello {{ first-name }}", "template_invalid"),
        ("Hello {{name}", "template_invalid"),
        ("x" * 1601, "template_invalid"),
        ("Big SALE today {{name}}", "template_invalid"),
    ],
)
async def test_template_lint_rejects_on_create(api: Platform, body: str, code: str) -> None:
    _, auth = await api.tenant_with_key()
    r = await api.http.post(
        "/v1/templates",
        headers=auth,
        json={"name": "t", "language": "en", "category": "utility", "channel": "sms", "body": body},
    )
    _problem(r, 422, code, "body")
    assert (await api.http.get("/v1/templates", headers=auth)).json() == []


async def test_template_lifecycle(api: Platform) -> None:
    _, auth = await api.tenant_with_key()
    first = await api.template(auth)
    second = await api.template(auth, body="Code: {{code}}. Valid 10 minutes.")
    assert (first["version"], second["version"]) == (1, 2)
    listed = (await api.http.get("/v1/templates", headers=auth)).json()
    assert [(t["name"], t["version"]) for t in listed] == [("otp", 2)]
    assert (await api.http.get("/v1/templates/otp/en", headers=auth)).json()["placeholders"] == ["code"]
    assert (await api.http.delete("/v1/templates/otp/en", headers=auth)).status_code == 204
    assert (await api.http.get("/v1/templates/otp/en", headers=auth)).status_code == 404
    assert (await api.http.delete("/v1/templates/otp/en", headers=auth)).status_code == 404


async def test_unverified_tenant_cannot_send_marketing(api: Platform) -> None:
    _, auth = await api.tenant_with_key(verified=False)
    await api.template(auth, name="promo", body="Winter sale: {{pct}} off", category="marketing")
    r = await api.http.post(
        "/v1/messages",
        headers=auth,
        json={**GOOD, "template": {"name": "promo", "language": "en"}, "params": {"pct": "20%"}},
    )
    _problem(r, 403, "verification_required")


async def test_openapi_document_is_served(api: Platform) -> None:
    r = await api.http.get("/schema/openapi.json")
    assert r.status_code == 200
    assert "/v1/messages" in r.json()["paths"]


async def test_health_readiness_and_metrics(api: Platform) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgres": "ok", "kafka": "ok"}
    metrics = (await api.http.get("/metrics")).text
    assert "herald_messages_accepted_total" in metrics
    assert "herald_produce_seconds_bucket" in metrics


@pytest.mark.parametrize(
    "change",
    [{"reference": "a\x00b"}, {"params": {"code": "1\x00"}}, {"idempotency_key": "k\x01"}, {"to": "+447400123456\x00"}],
)
async def test_control_characters_are_refused_at_the_boundary(api: Platform, change: dict[str, Any]) -> None:
    _, auth = await api.tenant_with_key()
    await api.template(auth)
    r = await api.http.post("/v1/messages", headers=auth, json={**GOOD, **change})
    _problem(r, 422, "validation_failed")
    r = await api.http.post(
        "/v1/templates",
        headers=auth,
        json={"name": "t2", "language": "en", "category": "utility", "channel": "sms", "body": "nul \x00 here"},
    )
    _problem(r, 422, "validation_failed", "body")


async def test_rejections_are_counted_by_code(api: Platform) -> None:
    from herald import metrics

    def count(code: str) -> float:
        return metrics.MESSAGES_REJECTED.labels(code)._value.get()

    _, auth = await api.tenant_with_key()
    await api.template(auth)
    before = {c: count(c) for c in ("invalid_recipient", "validation_failed", "params_missing")}
    await api.http.post("/v1/messages", headers=auth, json={**GOOD, "to": "+1"})
    await api.http.post("/v1/messages", headers=auth, json={**GOOD, "surprise": 1})
    await api.http.post("/v1/messages/batch", headers=auth, json={"messages": [{**GOOD, "params": {}}, GOOD]})
    assert count("invalid_recipient") == before["invalid_recipient"] + 1
    assert count("validation_failed") == before["validation_failed"] + 1
    assert count("params_missing") == before["params_missing"] + 1
