from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from herald.settings import Settings
from tests.integration.harness import Platform


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
