"""The long-running processes: `herald api|worker|sinks|carrier-sim|dev`.

Each imports its service only when chosen, so `herald api` loads neither the worker nor the sinks.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from typing import Any

import uvloop

from herald_cli.settings import Settings


def api(settings: Settings) -> None:
    if settings.api.workers > 1:
        # Several processes: each writes its metrics to files here and /metrics sums them
        # (prometheus_client's multiprocess mode, read at import time, so set before the
        # worker processes import the app). Stale files from an earlier run are removed.
        folder = (settings.data_dir / "prometheus-api").resolve()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from herald_api.http_server import uvicorn_options

    def config(port: int) -> uvicorn.Config:
        return uvicorn.Config(
            "herald_cli.processes:api_factory", factory=True, host=settings.api.host, port=port,
            workers=settings.api.workers, timeout_graceful_shutdown=10, **_UVICORN,
            **uvicorn_options(settings.api, settings.campaigns),
        )  # fmt: skip

    main = config(settings.api.port)
    # One server on one or two listeners; with an admin port, the app answers admin routes only
    # there and tenant routes only on the main port (herald_api.app.listener_guard).
    sockets = [main.bind_socket()]
    if settings.api.admin_port:
        sockets.append(config(settings.api.admin_port).bind_socket())
    if main.workers > 1:
        Multiprocess(main, sockets=sockets).run()
    else:
        uvicorn.Server(main).run(sockets=sockets)


def api_factory() -> Any:
    """uvicorn's factory (`factory=True`): each API worker process builds its own app from the
    same environment."""
    from herald import logs
    from herald.runtime import collect_garbage_rarely
    from herald_api.app import create_app
    from herald_api.http_server import DeadlinedHttpTools

    settings = Settings.from_env()
    logs.configure(settings.log_level, "api")
    # This process's protocol class (a uvicorn worker re-imports it).
    DeadlinedHttpTools.configure(settings.api, settings.campaigns)
    app = create_app(settings)
    collect_garbage_rarely()
    return app


def _consumer_process(settings: Settings, module: str, host: str, port: int) -> None:
    """worker and sinks: a main coroutine `run(settings, stop, membership)` beside the ops HTTP
    server, whose /readyz answers 200 once the process has joined its consumer groups."""
    from herald.kafka.membership import Membership
    from herald.runtime import collect_garbage_rarely, run_until_signalled

    mod = importlib.import_module(module)
    membership = Membership()
    collect_garbage_rarely()
    uvloop.run(
        run_until_signalled(
            lambda stop: mod.run(settings, stop, membership), mod.ops_app(settings, membership), host, port
        )
    )


def worker(settings: Settings) -> None:
    _consumer_process(settings, "herald_worker.main", settings.worker.metrics_host, settings.worker.metrics_port)


def sinks(settings: Settings) -> None:
    _consumer_process(settings, "herald_sinks.main", settings.sinks.metrics_host, settings.sinks.metrics_port)


def carrier_sim(settings: Settings) -> None:
    from herald_carrier_sim.app import create_app

    _serve(create_app(settings.carrier_sim, settings.provider), settings.carrier_sim.host, settings.carrier_sim.port)


def whatsapp_sim(settings: Settings) -> None:
    from herald_whatsapp_sim.app import create_app

    _serve(create_app(settings.whatsapp_sim), settings.whatsapp_sim.host, settings.whatsapp_sim.port)


def smsc_sim(settings: Settings) -> None:
    from herald_smsc_sim.app import create_app

    _serve(create_app(settings.smsc_sim), settings.smsc_sim.host, settings.smsc_sim.port)


def mail_sim(settings: Settings) -> None:
    from herald_mail_sim.app import create_app

    _serve(create_app(settings.mail_sim), settings.mail_sim.host, settings.mail_sim.port)


def ses_sim(settings: Settings) -> None:
    from herald_ses_sim.app import create_app

    _serve(create_app(settings.ses_sim), settings.ses_sim.host, settings.ses_sim.port)


def twilio_sim(settings: Settings) -> None:
    from herald_twilio_sim.app import create_app

    _serve(create_app(settings.twilio_sim), settings.twilio_sim.host, settings.twilio_sim.port)


_UVICORN: dict[str, Any] = {"loop": "uvloop", "log_level": "warning", "access_log": False, "log_config": None}
"""uvicorn as measured (uvloop, and httptools below), no access log, our JSON logging."""


def _serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, http="httptools", **_UVICORN)


def dev(settings: Settings) -> None:
    from herald_cli.dev import run_dev

    sys.exit(run_dev(settings))
