"""The single error mapping, exercised through a tiny Litestar app (no database, no broker)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, Request, get, post
from litestar.exceptions import InternalServerException
from litestar.params import JSONBody
from litestar.testing import TestClient
from litestar.utils.scope.state import ScopeState

from herald.errors import Conflict, InvalidRequest, NotFound, RateLimited
from herald_api import problems
from herald_api.ratelimit import FailedAuthLimiter
from herald_api.schemas import KeyCreate, MessageCreate
from herald_api.strict import strict_body


@get("/invalid", sync_to_thread=False)
def invalid() -> None:
    raise InvalidRequest.field("params.code", "is required", code="params_missing")


@get("/missing", sync_to_thread=False)
def missing() -> None:
    raise NotFound("no such thing", code="thing_not_found")


@get("/limited", sync_to_thread=False)
def limited() -> None:
    raise RateLimited("slow down", code="daily_recipient_limit", retry_after=30)


@get("/conflict", sync_to_thread=False)
def conflict() -> None:
    raise Conflict("exists")


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internal detail +447400123456")


@get("/broken", sync_to_thread=False)
def broken() -> None:
    try:
        {}["+447400123456"]
    except KeyError as exc:
        raise InternalServerException("lookup of +447400123456 failed") from exc


@post("/typed", sync_to_thread=False)
def typed(data: JSONBody[KeyCreate]) -> None:
    return None


app = Litestar([invalid, missing, limited, conflict, boom, broken, typed], exception_handlers=problems.HANDLERS)


def test_domain_errors_map_to_problem_json() -> None:
    with TestClient(app) as client:
        r = client.get("/invalid")
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "type": "https://herald.dev/problems/params_missing", "title": "The request is not valid",
            "status": 422, "detail": "params.code: is required", "code": "params_missing",
            "errors": [{"field": "params.code", "message": "is required"}],
        }  # fmt: skip
        assert client.get("/missing").json()["code"] == "thing_not_found"
        assert client.get("/conflict").status_code == 409


def test_rate_limit_carries_retry_after() -> None:
    with TestClient(app) as client:
        r = client.get("/limited")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "30"


def test_unexpected_error_is_a_generic_500_without_details() -> None:
    with TestClient(app) as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json()["code"] == "internal_error"
        assert "secret" not in r.text
        assert "+44" not in r.text


def test_a_server_side_http_error_is_logged_with_its_route_and_types_but_no_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with TestClient(app) as client, caplog.at_level("ERROR", logger=problems.__name__):
        r = client.get("/broken")
    assert (r.status_code, r.json()["code"]) == (500, "http_500")
    assert "+44" not in r.text
    (record,) = [r for r in caplog.records if r.getMessage() == "http error"]
    logged = {k: getattr(record, k) for k in ("status", "path", "error", "cause")}
    assert logged == {"status": 500, "path": "/broken", "error": "InternalServerException", "cause": "KeyError"}
    assert "+44" not in f"{record.getMessage()} {record.__dict__}"


def test_body_validation_names_the_field() -> None:
    with TestClient(app) as client:
        r = client.post("/typed", json={"kind": "gold"})
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == ["kind"]
        r = client.post("/typed", json={"kind": "live", "colour": "red"})
        assert [e["field"] for e in r.json()["errors"]] == ["colour"]
        r = client.post("/typed", content=b"{", headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["code"]) == (400, "malformed_request")


def test_an_unknown_key_is_named_as_sent_even_when_it_is_only_dots() -> None:
    # hypothesis (test_properties) found `{".": ...}` named as "" once the dots were stripped.
    assert problems.field_from_message("Object contains unknown field `.`") == "."
    assert problems.field_from_message("Object contains unknown field `x` - at `$.template`") == "template.x"
    assert problems.field_from_message("Object contains unknown field ``") == "body"


def test_failed_authentications_are_limited_per_client_address() -> None:
    """Finding 10 of the security review: the admin token could be guessed without limit."""
    now = [0.0]
    limiter = FailedAuthLimiter(3, max_clients=2, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1")
    with pytest.raises(RateLimited) as caught:
        limiter.check("10.0.0.1")
    assert (caught.value.code, caught.value.retry_after) == ("too_many_failed_attempts", 20)
    limiter.check("10.0.0.2")  # another address is not affected
    now[0] = 20.0  # a minute's worth of 3 refills one every 20 s
    limiter.check("10.0.0.1")
    limiter.failed("10.0.0.2")
    limiter.failed("10.0.0.3")  # past max_clients the oldest entry is forgotten
    limiter.check("10.0.0.1")
    assert FailedAuthLimiter(0).check("x") is None  # off


@post("/strict", sync_to_thread=False)
def strict(data: JSONBody[MessageCreate], request: Request[Any, Any, Any]) -> dict[str, object]:
    return {"ttl": data.ttl_seconds, "decoded_once": data is ScopeState.from_scope(request.scope).json}


strict_app = Litestar([strict], exception_handlers=problems.HANDLERS, before_request=strict_body)


def test_a_body_is_decoded_strictly_and_once() -> None:
    """A string is not a number (Litestar's own conversion is lax), and the handler gets the very
    value the strict decode made: Litestar does not parse the body a second time."""
    body = {"to": "+447400100010", "channel": "sms", "template": {"name": "otp", "language": "en"}}
    with TestClient(strict_app) as client:
        r = client.post("/strict", json={**body, "ttl_seconds": "60"})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["ttl_seconds"]
        r = client.post("/strict", json={**body, "ttl_seconds": 60})
        assert r.status_code == 201, r.text
        assert r.json() == {"ttl": 60, "decoded_once": True}
