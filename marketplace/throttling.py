"""Limits on expensive work anyone can ask for: per client IP and per signed-in identity, counted
in Redis (the "throttle" cache) so every web process shares them. A view names its `throttle_scope`;
the rates are settings (THROTTLE_RATES), chosen so that a person, or a script signing in a few
dozen wallets a minute, never meets them."""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.core.cache import caches
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from marketplace.errors import ApplicationError

logger = logging.getLogger(__name__)


class _ScopedThrottle(SimpleRateThrottle):
    """The view's `throttle_scope` at the rate THROTTLE_RATES["<scope>_per_<kind>"] (none: no
    limit), read per request so a changed setting applies at once."""

    kind = ""  # "ip" or "identity"

    def __init__(self):  # the rate depends on the view, known only in allow_request
        self.rate = None

    @property
    def cache(self):
        return caches["throttle"]

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, "throttle_scope", None)
        self.rate = settings.THROTTLE_RATES.get(f"{self.scope}_per_{self.kind}")
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except RedisError as exc:  # the limits wait for Redis; the work itself does not
            logger.warning("throttle %s not applied, Redis unavailable: %s", self.scope, exc)
            return True

    def get_cache_key(self, request, view) -> str | None:
        if self.kind == "identity":
            user = getattr(request, "user", None)
            if user is None or not user.is_authenticated:
                return None
            ident = str(user.pk)
        else:
            ident = self.get_ident(request)
        return f"throttle:{self.scope}:{self.kind}:{ident}"


class IpThrottle(_ScopedThrottle):
    kind = "ip"


class IdentityThrottle(_ScopedThrottle):
    kind = "identity"


THROTTLES = [IpThrottle, IdentityThrottle]


def too_many_requests(wait: float | None) -> ApplicationError:
    seconds = max(1, math.ceil(wait or 1))
    return ApplicationError(
        f"Too many requests: please wait {seconds} second{'s' * (seconds != 1)} and try again.",
        {"code": "throttled", "retry_after": seconds},
        status_code=429,
    )


def throttle_refusal(request, view) -> ApplicationError | None:
    """For a plain Django view (a form): the same limits as the API's, as a refusal."""
    for throttle_class in THROTTLES:
        throttle = throttle_class()
        if not throttle.allow_request(request, view):
            return too_many_requests(throttle.wait())
    return None
