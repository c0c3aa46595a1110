"""How API requests are authenticated: tokens that expire."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class ExpiringTokenAuthentication(TokenAuthentication):
    """API tokens last API_TOKEN_TTL_DAYS from the sign-in that issued them."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token.created + timedelta(days=settings.API_TOKEN_TTL_DAYS) <= timezone.now():
            token.delete()
            raise exceptions.AuthenticationFailed(
                "Your API token has expired: sign in again for a new one."
            )
        return user, token
