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
