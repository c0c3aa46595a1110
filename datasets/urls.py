from django.urls import path

from datasets import api, views

urlpatterns = [
    path("datasets/", views.browse, name="datasets-browse"),
    path("datasets/new/", views.upload, name="datasets-new"),
    path("datasets/mine/", views.mine, name="datasets-mine"),
    path("datasets/<id:pk>/", views.detail, name="datasets-detail"),
    path("api/datasets", api.DatasetListApi.as_view(), name="api-datasets"),
    path("api/datasets/mine", api.DatasetMineApi.as_view(), name="api-datasets-mine"),
    path("api/datasets/<id:pk>", api.DatasetDetailApi.as_view(), name="api-dataset"),
    path(
        "api/datasets/<id:pk>/signature",
        api.DatasetSignatureApi.as_view(),
        name="api-dataset-signature",
    ),
    path("api/datasets/<id:pk>/verify", api.DatasetVerifyApi.as_view(), name="api-dataset-verify"),
]
