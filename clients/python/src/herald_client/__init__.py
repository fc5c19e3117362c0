"""Herald's Python client: `Client` and `AsyncClient`, typed models, typed problems, and
`verify_callback` for the status callbacks Herald sends."""

from herald_client._calls import RetryPolicy
from herald_client.callbacks import verify_callback
from herald_client.client import AsyncClient, Client
from herald_client.errors import (
    BadRequest,
    Forbidden,
    HeraldError,
    InvalidSignature,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from herald_client.models import (
    BatchAccepted,
    BatchItemResult,
    CallbackEvent,
    Category,
    Channel,
    EmailParts,
    Event,
    ItemError,
    Limits,
    Message,
    MessageAccepted,
    MessageCreate,
    Price,
    Status,
    SuppressionEvent,
    Template,
    TemplateCreate,
    TemplateRef,
    Usage,
)

__version__ = "0.3.0"
__all__ = [
    "AsyncClient",
    "BadRequest",
    "BatchAccepted",
    "BatchItemResult",
    "CallbackEvent",
    "Category",
    "Channel",
    "Client",
    "EmailParts",
    "Event",
    "Forbidden",
    "HeraldError",
    "InvalidSignature",
    "ItemError",
    "Limits",
    "Message",
    "MessageAccepted",
    "MessageCreate",
    "NotFound",
    "Price",
    "RateLimited",
    "RetryPolicy",
    "Status",
    "SuppressionEvent",
    "Template",
    "TemplateCreate",
    "TemplateRef",
    "Unauthenticated",
    "Unavailable",
    "Usage",
    "verify_callback",
]  # fmt: skip
