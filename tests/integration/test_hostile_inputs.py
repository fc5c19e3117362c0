"""Hostile input at every inbound endpoint: each answer is a 4xx problem (never a 500, never a
traceback in the log) and changes nothing. Findings of the security review (issue #29) are
named where a test reproduces one; provider-side forgeries (receipts naming another tenant,
out-of-range times, replays) are in test_receipt_binding.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from herald import signing
from tests.integration.harness import Platform


def _is_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.json()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    yield
    assert not [r for r in caplog.records if r.exc_info], "a hostile request logged a traceback"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("v1", ["\u00e9", "\u2603" * 64, "0" * 63 + "\u00e9"])
async def test_a_non_ascii_provider_signature_is_401(api: Platform, v1: str, no_tracebacks: None) -> None:
    """Finding 6: `compare_digest` on a non-ASCII str raised TypeError: a 500 and a traceback
    per request, to anyone. httpx sends header values as UTF-8 bytes, as an attacker's client does;
    a current timestamp gets the check as far as the comparison."""
    header = f"t={int(time.time())},v1={v1}"
    r = await api.http.post(
        "/v1/providers/carrier-sim/receipts", content=b"{}", headers={"x-provider-signature": header.encode()}
    )
    _is_problem(r, 401, "invalid_signature")


async def test_a_deeply_nested_batch_item_is_400(api: Platform, no_tracebacks: None) -> None:
    """Finding 6: a batch item nested thousands deep raised RecursionError in the decoder (500)."""
    _, auth = await api.tenant_with_key()
    deep = "[" * 20_000 + "]" * 20_000
    body = '{"messages": [{"to": ' + deep + "}]}"
    r = await api.http.post("/v1/messages/batch", content=body, headers={**auth, "content-type": "application/json"})
    _is_problem(r, 400, "malformed_request")


async def test_a_name_with_a_trailing_newline_is_refused(api: Platform) -> None:
    """Finding 7: `$` matched before a trailing newline, so a template named "otp\\n" was stored."""
    _, auth = await api.tenant_with_key()
    template = {"name": "otp\n", "language": "en", "category": "authentication", "channel": "sms",
                "body": "Your code is {{code}}"}  # fmt: skip
    r = await api.http.post("/v1/templates", json=template, headers=auth)
    _is_problem(r, 422, "validation_failed")
    r = await api.http.post("/v1/templates", json={**template, "name": "otp", "language": "en\n"}, headers=auth)
    _is_problem(r, 422, "validation_failed")
    assert (await api.http.get("/v1/templates", headers=auth)).json() == []


@pytest.mark.parametrize("month", ["2026-12\n", "2026-12%0A", "2026-12\r\n"])
async def test_a_month_with_a_trailing_newline_is_refused_before_any_export_byte(api: Platform, month: str) -> None:
    """Finding 7: `month=2026-12%0A` passed the pattern and broke the admin export mid-response."""
    r = await api.http.get("/v1/admin/usage", params={"month": month, "format": "csv"}, headers=api.admin)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_oversize_and_malformed_bodies_are_problems(api: Platform, no_tracebacks: None) -> None:
    _, auth = await api.tenant_with_key()
    headers = {**auth, "content-type": "application/json"}
    big = b'{"to": "' + b"1" * (api.settings.api.max_body_bytes + 1) + b'"}'
    _is_problem(await api.http.post("/v1/messages", content=big, headers=headers), 413, "payload_too_large")
    _is_problem(await api.http.post("/v1/messages", content=b"{", headers=headers), 400, "malformed_request")
    _is_problem(await api.http.post("/v1/messages", content=b"\xff\xfe", headers=headers), 400, "malformed_request")
    signed = {"x-provider-signature": signing.sign(api.settings.provider.receipt_secret, big)}
    r = await api.http.post("/v1/providers/carrier-sim/receipts", content=big, headers=signed)
    _is_problem(r, 413, "payload_too_large")
