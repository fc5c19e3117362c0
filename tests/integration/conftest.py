from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from herald_cli.settings import Settings
from tests.integration.harness import Platform


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on the test's own database (for tests that read or write it directly)."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    running = await Platform(settings).start()
    yield running
    await running.stop()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Platform]:
    """Only the HTTP API (no worker, sink or carrier): for tests of the request boundary."""
    running = await Platform(settings).start(worker=False, sinks=False, sim=False)
    yield running
    await running.stop()
