from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST
from django.views.defaults import page_not_found
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView

from marketplace import api, selectors
from marketplace.health import system_health
from marketplace.models import User


def not_found(request, exception=None):
    """A path that matches no route: the API's error body under /api/, the page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"message": "There is no such resource.", "extra": {"code": "not_found"}}, status=404
        )
    return page_not_found(request, exception)


def home(request):
    return render(
        request,
        "marketplace/home.html",
        {"privacy_min_group_rows": settings.PRIVACY_MIN_GROUP_ROWS},
    )


def healthz(request):
    health = system_health()
    return JsonResponse(health, status=200 if health["ok"] else 503)


def _figure_rows(figures: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in figures.items():
        if isinstance(value, dict):
            rows.extend((str(k), str(v)) for k, v in value.items())
        elif isinstance(value, list):
            rows.append((key.replace("_", " ").capitalize(), ", ".join(map(str, value))))
        else:
            rows.append((key.replace("_", " ").capitalize(), str(value)))
    return rows


def status_page(request):
    health = system_health()
    parts = [
        {
            "name": name,
            "ok": part["ok"],
            "error": part["error"],
            "rows": _figure_rows(part["figures"]),
        }
        for name, part in health["parts"].items()
    ]
    return render(
        request,
        "marketplace/status.html",
        {"ok": health["ok"], "parts": parts},
        status=200 if health["ok"] else 503,
    )


def local_path(value: str | None) -> str:
    """`value` if it is a path on this site, else "": a sign-in never sends anyone to another
    origin or to a javascript: URL."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return ""
    return value if url_has_allowed_host_and_scheme(value, allowed_hosts=None) else ""


@ensure_csrf_cookie  # the page's script sends it back with the session sign-in
def signin(request):
    after = local_path(request.GET.get("next"))
    if request.user.is_authenticated and request.user.address:
        return redirect(after or "profile")
    return render(request, "marketplace/signin.html", {"next": after})


@require_POST
def signout(request):
    logout(request)
    return redirect("home")


@login_required
def profile(request):
    user = request.user
    did = selectors.identity_did(user)
    public_url = (
        request.build_absolute_uri(reverse("public-profile", args=[user.address])) if did else ""
    )
    return render(
        request,
        "marketplace/profile.html",
        {"profile": selectors.identity_profile(user), "did": did, "public_url": public_url},
    )


def public_profile(request, address: str):
    user = User.objects.filter(address__iexact=address).first()
    if user is None:
        raise Http404("No marketplace identity has this address.")
    return render(
        request,
        "marketplace/public_profile.html",
        {"profile": selectors.identity_profile(user), "did": selectors.identity_did(user)},
    )


SCHEMA_MEDIA_TYPES = (
    "application/vnd.oai.openapi",
    "application/yaml",
    "application/vnd.oai.openapi+json",
    "application/json",
)


class SchemaApi(SpectacularAPIView):
    """This API's OpenAPI 3 schema: YAML, or JSON with ?format=json; errors come in the same
    media type as the schema would."""

    @extend_schema(
        parameters=[
            OpenApiParameter("format", {"type": "string", "enum": ["json", "yaml"]}),
            OpenApiParameter(
                "lang", {"type": "string"}, description="A language; others give the default."
            ),
        ],
        responses={
            **{(200, media): OpenApiTypes.OBJECT for media in SCHEMA_MEDIA_TYPES},
            **{
                (code, media): OpenApiResponse(api.ErrorSerializer, api.ERROR_DESCRIPTIONS[code])
                for code in api.PUBLIC
                for media in SCHEMA_MEDIA_TYPES
            },
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
