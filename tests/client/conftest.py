from tests.integration.conftest import api, platform, pool

__all__ = ["api", "platform", "pool"]
