from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from marketplace import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("status", views.status_page, name="status"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
    # The sections below open as their features land; until then they say so plainly.
    path(
        "datasets/",
        views.not_open_yet,
        {"title": "Datasets", "what": "Browsing and listing datasets"},
        name="datasets-browse",
    ),
    path(
        "commission/",
        views.not_open_yet,
        {"title": "Commission a model", "what": "Commissioning models on listed data"},
        name="training-new",
    ),
    path(
        "earnings/",
        views.not_open_yet,
        {"title": "Earnings", "what": "Earnings and withdrawals"},
        name="earnings",
    ),
    path(
        "signin/",
        views.not_open_yet,
        {"title": "Sign in", "what": "Sign-in with your Ethereum wallet"},
        name="signin",
    ),
]
