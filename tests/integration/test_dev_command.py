"""`herald dev` (what `make run` starts): boots everything, serves the walk-through, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from herald.embedded import free_port

pytestmark = pytest.mark.timeout(180)


def _wait_for_banner(process: subprocess.Popen[str], timeout: float = 90) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.strip().startswith("Logs:"):  # the banner's last line of addresses
            return lines
    raise AssertionError("no banner; output was:\n" + "".join(lines))


def test_dev_runs_the_walkthrough_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port, smsc_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HERALD_")},
        "HERALD_DATA_DIR": str(tmp_path / "data"), "HERALD_API_PORT": str(port), "HERALD_ADMIN_TOKEN": "dev-token",
        "HERALD_WHATSAPP_SIM_PORT": str(free_port()), "HERALD_SMSC_SIM_PORT": str(smsc_port),
        "HERALD_SMSC_SIM_SMPP_PORT": str(free_port()), "HERALD_TWILIO_SIM_PORT": str(free_port()),
        "HERALD_MAIL_SIM_PORT": str(free_port()), "HERALD_MAIL_SIM_SMTP_PORT": str(free_port()),
        "HERALD_MAIL_SIM_DNS_PORT": str(free_port(socket.SOCK_DGRAM)), "HERALD_EMAIL_INBOUND_PORT": str(free_port()),
        "HERALD_SES_SIM_PORT": str(free_port()),
    }  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "herald_cli", "dev"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        banner = "".join(_wait_for_banner(process))
        # The banner names where things are: the data directory's logs, and every /metrics.
        assert f"Logs:         {tmp_path / 'data' / 'logs'}/" in banner
        scraped = [line.split()[1] for line in banner.splitlines() if line.strip().startswith("Metrics:")]
        assert len(scraped) == 3
        pages = {url: httpx.get(url, timeout=5).text for url in scraped}
        assert all("herald_" in page for page in pages.values())
        # Series of rare events exist from the first scrape, at 0: their panels are never empty.
        everything = "".join(pages.values())
        assert 'herald_sink_parked_records{group="herald-sinks-billing"} 0.0' in everything
        assert 'herald_provider_throttle_cuts_total{provider="carrier-sim"} 0.0' in everything
        base, admin = f"http://127.0.0.1:{port}", {"authorization": "Bearer dev-token"}
        with httpx.Client(base_url=base, timeout=10) as http:
            tenant = http.post("/v1/admin/tenants", headers=admin, json={"name": "Acme Air", "tier": "standard"})
            assert tenant.status_code == 201, tenant.text
            key = http.post(f"/v1/admin/tenants/{tenant.json()['id']}/keys", headers=admin, json={"kind": "live"})
            auth = {"authorization": f"Bearer {key.json()['key']}"}
            template = {"name": "otp", "language": "en", "category": "authentication", "channel": "sms",
                        "body": "Your Acme code is {{code}}"}  # fmt: skip
            assert http.post("/v1/templates", headers=auth, json=template).status_code == 201
            sent = http.post("/v1/messages", headers=auth, json={
                "to": "+447400123456", "channel": "sms", "template": {"name": "otp", "language": "en"},
                "params": {"code": "424242"}})  # fmt: skip
            assert sent.status_code == 202, sent.text
            # The banner came once the worker and sinks held their groups: the newcomer's first
            # message is delivered in moments, not after ~15 s of 404s (issue #26, item 6).
            sent_at, status = time.monotonic(), None
            while time.monotonic() < sent_at + 20 and status != "delivered":
                r = http.get(f"/v1/messages/{sent.json()['id']}", headers=auth)
                status = r.json().get("status") if r.status_code == 200 else None
                time.sleep(0.1)
            assert status == "delivered"
            assert time.monotonic() - sent_at < 5, "the platform was not ready when its banner said so"
        # `make run` routes sms over SMPP to the SMSC double (the aggregator double is the fallback).
        smsc = httpx.get(f"http://127.0.0.1:{smsc_port}/_sim/sent", timeout=5).json()
        assert smsc["per_destination"] == {"447400123456": 1}
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        # Every child is gone: the API port is closed and the database stopped.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
