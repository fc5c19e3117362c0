"""The worker's and sinks' own /healthz, /readyz and /metrics (the API's are in test_api_errors)."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from herald.kafka.membership import Membership
from herald_cli.settings import Settings
from herald_sinks.main import ops_app as sinks_ops
from herald_worker.main import ops_app as worker_ops


@pytest.mark.parametrize(("ops_app", "checks"), [(sinks_ops, {"postgres": "ok"}), (worker_ops, {"kafka": "ok"})])
async def test_ops_endpoints(settings: Settings, ops_app: object, checks: dict[str, str]) -> None:
    membership = Membership()
    membership.expect(["a-group"])
    async with AsyncTestClient(app=ops_app(settings, membership)) as client:  # type: ignore[operator]
        assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
        # Dependencies answer, but the process has not joined its group yet: not ready.
        joining = await client.get("/readyz")
        assert (joining.status_code, joining.json()["checks"]) == (503, {**checks, "groups": "joining a-group"})
        membership.joined("a-group")
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]) == (200, {**checks, "groups": "ok"})
        assert "herald_" in (await client.get("/metrics")).text
