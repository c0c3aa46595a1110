from django.urls import path

from validators import api, views

urlpatterns = [
    path("validators/", views.validators_page, name="validators"),
    path("api/validators", api.ValidatorListApi.as_view(), name="api-validators"),
    path(
        "api/attestation-requests",
        api.AttestationRequestListApi.as_view(),
        name="api-attestation-requests",
    ),
    path(
        "api/attestation-requests/<id:request_id>/attestation",
        api.AttestationApi.as_view(),
        name="api-attestation",
    ),
    path(
        "api/attestation-requests/<id:request_id>/refusal",
        api.RefusalApi.as_view(),
        name="api-attestation-refusal",
    ),
]
