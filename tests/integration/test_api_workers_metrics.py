"""`herald api` with two worker processes: /metrics reports the sum over both."""

from __future__ import annotations

import re
import signal

import httpx

from herald.embedded import free_port, wait_for_port
from herald_cli.settings import Settings
from tests.integration.harness import Platform
from tests.integration.processes import env_for, spawn


async def test_metrics_are_summed_across_api_processes(settings: Settings) -> None:
    port = free_port()
    env = env_for(settings, HERALD_API_PORT=str(port), HERALD_API_WORKERS="2", HERALD_DATA_DIR=str(settings.data_dir),
                  HERALD_ADMIN_TOKEN=settings.api.admin_token)  # fmt: skip
    process = spawn("api", env, settings.data_dir / "api.log")
    helper = Platform(settings, url=f"http://127.0.0.1:{port}")  # only its HTTP helpers, at the spawned API
    try:
        wait_for_port(port, 30, alive=lambda: process.poll() is None)
        _, auth = await helper.tenant_with_key(tier="enterprise")
        await helper.template(auth)
        # Fresh connections, so that requests spread over both processes.
        for i in range(40):
            async with httpx.AsyncClient(base_url=helper.url) as one_shot:
                body = {"to": f"+4474001{100 + i:05d}", "channel": "sms",
                        "template": {"name": "otp", "language": "en"}, "params": {"code": "1"}}  # fmt: skip
                assert (await one_shot.post("/v1/messages", headers=auth, json=body)).status_code == 202
        text = (await helper.http.get("/metrics")).text
        accepted = sum(
            float(v) for v in re.findall(r"^herald_messages_accepted_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        )
        assert accepted == 40, text[:2000]
        assert len(list((settings.data_dir / "prometheus-api").glob("*.db"))) >= 2  # both processes wrote
    finally:
        await helper.http.aclose()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
