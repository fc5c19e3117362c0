"""`herald campaigns`: a tenant's command line, a real process against a running platform."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import Platform
from tests.integration.processes import env_for

PROMO = {"name": "sale", "body": "Hi {{name}}, {{pct}}% off today. Reply STOP to opt out", "category": "marketing"}


async def _herald(platform: Platform, key: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = env_for(platform.settings, HERALD_TENANT_KEY=key)
    command = [sys.executable, "-m", "herald_cli", "campaigns", "--url", platform.url, *argv]
    return await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120)


async def test_create_uploads_starts_and_follows_a_campaign_to_the_end(platform: Platform, tmp_path: Path) -> None:
    _, auth = await platform.tenant_with_key(tier="enterprise")
    await platform.template(auth, channel="sms", **PROMO)
    key = auth["authorization"].removeprefix("Bearer ")
    file = tmp_path / "customers.csv"
    file.write_text("to,name,pct\n" + "".join(f"+44791{i:06d}7,Fay,15\n" for i in range(200)) + "12,Gil,15\n")

    done = await _herald(platform, key, "create", str(file), "--template", "sale", "--start")
    assert done.returncode == 0, done.stderr
    campaign_id, state, *_ = done.stdout.split()
    assert state == "completed", done.stdout
    assert "rows=201" in done.stdout
    assert "rejected=1" in done.stdout
    counts = dict(pair.split("=") for pair in done.stdout.split()[3:])
    assert int(counts["sent"]) + int(counts["delivered"]) == 200, "followed until every message is with the carrier"
    assert "rows refused: 1" in done.stderr  # and where to read them
    assert "uploading" in done.stderr  # the progress bar was drawn

    status = await _herald(platform, key, "status", campaign_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.split()[:2] == [campaign_id, "completed"]
    refused = await _herald(platform, key, "cancel", campaign_id)
    assert refused.returncode != 0
    assert "409 campaign_state" in refused.stderr
    unknown = await _herald(platform, "not-a-key", "status", campaign_id)
    assert unknown.returncode != 0
    assert "401" in unknown.stderr
