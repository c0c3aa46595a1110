from django.http import JsonResponse
from django.shortcuts import render

from marketplace.health import system_health


def home(request):
    return render(request, "marketplace/home.html")


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
        {"name": name, "ok": part["ok"], "error": part["error"], "rows": _figure_rows(part["figures"])}
        for name, part in health["parts"].items()
    ]
    return render(
        request,
        "marketplace/status.html",
        {"ok": health["ok"], "parts": parts},
        status=200 if health["ok"] else 503,
    )


def not_open_yet(request, *, title: str, what: str):
    return render(request, "marketplace/not_open_yet.html", {"title": title, "what": what})
