"""Middleware of the whole site: a node outage (chain, IPFS, Redis) that reaches a page becomes
the readable 503 page (the API answers the same outage in marketplace.errors.api_exception_handler),
and every answer carries the security headers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from marketplace.errors import node_outage, outage_body


class NodeOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        outage = node_outage(exception)
        if outage is None:
            return None
        body = outage_body(outage)
        if request.path.startswith("/api/"):  # a plain Django view under the API's prefix
            return JsonResponse(body, status=503)
        return render(
            request,
            "503.html",
            {"message": body["message"], "part": outage.part},
            status=503,
        )


class SecurityHeadersMiddleware:
    """A Content-Security-Policy on every answer: scripts only from this site or carrying the
    request's nonce, no framing, no plugins, forms and <base> only to this site. The dev wallet's
    chain node is the one other origin a page may call (development chain only)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.csp_nonce = secrets.token_urlsafe(18)
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", content_security_policy(request.csp_nonce))
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response


def content_security_policy(nonce: str) -> str:
    connect = ["'self'"]
    if settings.CHAIN_ID == settings.DEV_CHAIN_ID:
        rpc = urlsplit(settings.CHAIN_PUBLIC_RPC_URL or settings.CHAIN_RPC_URL)
        connect.append(f"{rpc.scheme}://{rpc.netloc.rpartition('@')[2]}")
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", f"'nonce-{nonce}'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": connect,
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())
