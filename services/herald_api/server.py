"""Entry point for uvicorn (`factory=True`), so that several API worker processes each build
their own app from the same environment."""

from __future__ import annotations

from litestar import Litestar

from herald import logs
from herald.settings import Settings
from herald_api.app import create_app
from herald_api.http_server import DeadlinedHttpTools


def factory() -> Litestar:
    settings = Settings.from_env()
    logs.configure(settings.log_level, "api")
    DeadlinedHttpTools.configure(settings.api)  # this process's protocol class (a worker re-imports it)
    return create_app(settings)
