"""Schemathesis against the served OpenAPI document: no 5xx, responses match the schema.

Bounded (examples per operation and a wall-clock limit) so it fits in `make test`; found the NUL
byte bug that once reached PostgreSQL. Admin and tenant operations are fuzzed with their own
credentials; the tenant has a template so that sends reach the deeper validation paths.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

from herald_cli.settings import Settings
from tests.integration.harness import Platform

pytestmark = pytest.mark.timeout(300)
CLI = Path(sys.executable).with_name("schemathesis")


async def _run(api: Platform, token: str, path_flag: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(CLI), "run", f"{api.url}/schema/openapi.json", "-H", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", "40",
        path_flag, "^/v1/admin", "--max-failures", "5", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    return process.returncode or 0, out.decode()


@pytest.mark.skipif(shutil.which(str(CLI)) is None, reason="schemathesis is a dev dependency; `make install` adds it")
@pytest.mark.long
async def test_fuzzing_finds_no_server_errors(settings: Settings) -> None:
    # With the doubles: the WhatsApp routes ask Meta (the double), which must answer.
    api = await Platform(settings).start(worker=False, sinks=False, email=True)
    try:
        await _fuzz(api)
    finally:
        await api.stop()


async def _fuzz(api: Platform) -> None:
    _, auth = await api.tenant_with_key(tier="enterprise", kind="test")
    await api.template(auth)
    token = auth["authorization"].removeprefix("Bearer ")
    for credential, flag in ((token, "--exclude-path-regex"), (api.settings.api.admin_token, "--include-path-regex")):
        code, out = await _run(api, credential, flag)
        assert code == 0, out[-4000:]
        counts = re.search(r"(\d+) generated, (\d+) passed", out)
        assert counts is not None, out[-2000:]
        assert int(counts.group(1)) == int(counts.group(2)) > 100, counts.group(0)
