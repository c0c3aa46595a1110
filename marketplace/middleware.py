"""A node outage (chain, IPFS, Redis) that reaches a page becomes the readable 503 page. The API
answers the same outage in marketplace.errors.api_exception_handler."""

from __future__ import annotations

from collections.abc import Callable

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
