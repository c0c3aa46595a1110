from django.contrib import admin
from django.urls import include, path, register_converter

from marketplace import api, views

# Ids in paths: digits the database can hold; a longer one matches no route (a 404).
register_converter(api.RecordIdConverter, "id")
handler404 = "marketplace.views.not_found"

api_urls = [
    path("api/auth/nonce", api.NonceApi.as_view(), name="api-auth-nonce"),
    path("api/auth/login", api.LoginApi.as_view(), name="api-auth-login"),
    path("api/auth/logout", api.LogoutApi.as_view(), name="api-auth-logout"),
    path("api/me", api.MeApi.as_view(), name="api-me"),
    path(
        "api/me/did-attributes", api.DidAttributeRequestApi.as_view(), name="api-me-did-attributes"
    ),
    path("api/dids/<str:did>", api.DidDocumentApi.as_view(), name="api-did-document"),
    path("api/schema", views.SchemaApi.as_view(), name="api-schema"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("status", views.status_page, name="status"),
    path("signin/", views.signin, name="signin"),
    path("signout/", views.signout, name="signout"),
    path("profile/", views.profile, name="profile"),
    path("profiles/<str:address>/", views.public_profile, name="public-profile"),
    path("admin/", admin.site.urls),
    *api_urls,
    path("", include("datasets.urls")),
    path("", include("training.urls")),
    path("", include("validators.urls")),
]
