"""The errors every layer shares: `ApplicationError` (a problem the user can act on, a 4xx) and
`NodeUnavailable` (a node the marketplace depends on is down, a 503), and how the API turns
both into `{"message": ..., "extra": ...}`."""

from __future__ import annotations

import logging

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A problem the user can act on. `status_code` is the HTTP status the API answers with."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, extra: dict | None = None, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


def refuse(message: str, code: str, status_code: int = status.HTTP_400_BAD_REQUEST):
    """The ApplicationError a service raises to refuse a request: `raise refuse(...)`."""
    return ApplicationError(message, {"code": code}, status_code=status_code)


# --- node outages ------------------------------------------------------------------------------

PARTS = {  # part -> what a person calls it
    "chain": "The blockchain node",
    "ipfs": "The IPFS node",
    "redis": "The task queue (Redis)",
}


class NodeUnavailable(Exception):
    """A node the marketplace depends on does not answer (transient: try again later). The API
    answers 503 with `extra.part` naming it; a page shows templates/503.html."""

    part = ""  # one of PARTS
    code = "node_unavailable"

    @property
    def public_message(self) -> str:
        name = PARTS.get(self.part, "A service the marketplace depends on")
        return f"{name} is not answering, so this cannot be done right now. Try again shortly."


class BrokerUnavailable(NodeUnavailable):
    """Redis, the Celery broker, refuses the connection: work cannot be queued."""

    part = "redis"


def node_outage(exc: BaseException) -> NodeUnavailable | None:
    """The outage behind `exc`, if it is one: ours, or the broker client's own errors (raised
    when a task is queued, which our code does not wrap)."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, NodeUnavailable):
        return exc
    if isinstance(exc, (OperationalError, RedisConnectionError, RedisTimeoutError)):
        outage = BrokerUnavailable(f"the Celery broker does not answer: {exc}")
        outage.__cause__ = exc
        return outage
    return None


def outage_body(outage: NodeUnavailable) -> dict:
    logger.warning("%s unavailable: %s", outage.part or "a node", outage)
    return {"message": outage.public_message, "extra": {"code": outage.code, "part": outage.part}}


def api_exception_handler(exc, context):
    from rest_framework.exceptions import Throttled

    from marketplace.throttling import too_many_requests

    if isinstance(exc, Throttled):
        exc = too_many_requests(exc.wait)
    if isinstance(exc, ApplicationError):
        response = Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
        if "retry_after" in exc.extra:
            response["Retry-After"] = str(exc.extra["retry_after"])
        return response
    outage = node_outage(exc)
    if outage is not None:
        set_rollback()
        return Response(outage_body(outage), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"message": str(response.data["detail"]), "extra": {}}
    elif response is not None:
        response.data = {"message": "The request is not valid.", "extra": {"fields": response.data}}
    return response
