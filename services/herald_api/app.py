"""The Litestar application: `create_app(settings)` wires everything once, at startup."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiokafka.errors import KafkaError
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Guard

from herald import metrics
from herald.db import tenants
from herald.db.pool import create_pool
from herald.email.bounces import BounceAddresses
from herald.kafka.admin import missing_topics
from herald.kafka.producer import Producer
from herald.kafka.topics import Names
from herald.ops import check_postgres, ops_handlers
from herald.whatsapp.graph import Graph
from herald_api import problems
from herald_api.auth import Principal, principal_dependency
from herald_api.campaign_runner import CampaignRunner
from herald_api.controllers.admin import AdminController
from herald_api.controllers.billing import AdminUsageController, RateCardController, UsageController
from herald_api.controllers.campaigns import CampaignController
from herald_api.controllers.email import IdentityController, SesNotificationController, UnsubscribeController
from herald_api.controllers.invoicing import CustomerController, InvoiceController, PeriodController
from herald_api.controllers.messages import LimitsController, MessageController
from herald_api.controllers.receipts import ReceiptController
from herald_api.controllers.sms_admin import SmsProviderController, SmsRouteController
from herald_api.controllers.sms_callbacks import TwilioCallbackController
from herald_api.controllers.suppressions import SuppressionController
from herald_api.controllers.templates import TemplateController
from herald_api.controllers.whatsapp import (
    WhatsAppAccountController,
    WhatsAppAdminController,
    WhatsAppWebhookController,
)
from herald_api.deps import Services, build
from herald_api.http_metrics import http_metrics
from herald_api.inbound_mail import InboundMail
from herald_api.inbound_mail import serve as serve_inbound_mail
from herald_api.settings import ApiConfig
from herald_api.strict import strict_body

log = logging.getLogger(__name__)

_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


async def _stopped(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await task


def _services(state: State) -> Services:
    services: Services = state.services
    return services


def create_app(settings: ApiConfig) -> Litestar:
    names = Names(settings.kafka.topic_prefix)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as started:
            # Each part is closed on the way out (last started, first closed), also when a later
            # part fails to start: a broker that is down must not leave the pool open.
            pool = await create_pool(settings.database, settings.api.database_timeout_seconds)
            started.push_async_callback(pool.close)
            producer = Producer(settings.kafka, names)
            started.push_async_callback(producer.stop)  # aiokafka: stop() also after a failed start()
            await producer.start()
            graph = Graph(settings.whatsapp.graph_url, settings.whatsapp.timeout_seconds)
            started.push_async_callback(graph.close)
            app.state.services = services = build(settings, pool, producer, graph)
            started.push_async_callback(services.email.close)
            if settings.email.inbound_port:
                handler = InboundMail(BounceAddresses(settings.secrets.keys()), services.email,
                                      settings.email.unsubscribe_mailto)  # fmt: skip
                inbound = await serve_inbound_mail(handler, settings.email.inbound_host, settings.email.inbound_port)
                started.push_async_callback(inbound.close)
            if settings.campaigns.max_concurrent:
                runner = CampaignRunner(pool, services.sender, services.content_keys, settings.campaigns,
                                        functools.partial(tenants.get, pool))  # fmt: skip
                stop = asyncio.Event()
                producing = asyncio.create_task(runner.run(stop), name="campaign-runner")
                started.push_async_callback(_stopped, stop, producing)
            yield

    async def ready() -> dict[str, str]:
        services: Services = app.state.services
        checks = {"postgres": "unreachable", "kafka": "unreachable"}
        try:
            checks["postgres"] = await check_postgres(services.pool)
        except (OSError, Exception) as exc:
            checks["postgres"] = type(exc).__name__
        try:
            missing = await missing_topics(settings.kafka, names)
            checks["kafka"] = "ok" if not missing else f"missing topics: {', '.join(missing)}"
        except (KafkaError, OSError) as exc:
            checks["kafka"] = type(exc).__name__
        return checks

    app = Litestar(
        route_handlers=[
            AdminController,
            WhatsAppAccountController,
            WhatsAppAdminController,
            WhatsAppWebhookController,
            RateCardController,
            AdminUsageController,
            UsageController,
            PeriodController,
            CustomerController,
            InvoiceController,
            TemplateController,
            MessageController,
            CampaignController,
            LimitsController,
            SuppressionController,
            IdentityController,
            UnsubscribeController,
            SesNotificationController,
            SmsProviderController,
            SmsRouteController,
            TwilioCallbackController,
            ReceiptController,
            *ops_handlers(ready, role=metrics.Role.API),
        ],
        dependencies={
            "svc": Provide(_services, sync_to_thread=False),
            "principal": Provide(principal_dependency, sync_to_thread=False),
        },
        signature_namespace={"Services": Services, "Principal": Principal, "Request": Request},
        exception_handlers=problems.HANDLERS,
        guards=[listener_guard(settings.api.admin_port)] if settings.api.admin_port else [],
        lifespan=[lifespan],
        middleware=[http_metrics],
        request_max_body_size=settings.api.max_body_bytes,
        before_request=strict_body,
        after_request=_add_security_headers,
        openapi_config=OpenAPIConfig(
            title="Herald API",
            version="1.0.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(type="http", scheme="bearer", description="Tenant API key"),
                    "adminToken": SecurityScheme(type="http", scheme="bearer", description="HERALD_ADMIN_TOKEN"),
                }
            ),
        ),
        debug=False,
        logging_config=None,
    )
    return app


def listener_guard(admin_port: int) -> Guard:
    """With a separate admin listener, `/v1/admin/...` answers only on `admin_port` and every
    other `/v1/...` route only on the main port; elsewhere they are unknown routes (404), so the
    public listener does not even reveal the admin API. Health, readiness, metrics and the
    OpenAPI document answer on both."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        path = connection.url.path
        if not path.startswith("/v1/"):
            return
        server = connection.scope.get("server")
        on_admin_listener = server is not None and server[1] == admin_port
        if path.startswith("/v1/admin/") is not on_admin_listener:
            raise NotFoundException()

    return guard


async def _add_security_headers(response: Response[Any]) -> Response[Any]:
    response.headers.update(_SECURITY_HEADERS)
    return response
