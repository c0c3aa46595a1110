from django.urls import path

from training import api, views

urlpatterns = [
    path("commission/", views.commission, name="training-new"),
    path("runs/", views.my_runs, name="training-my-runs"),
    path("runs/<id:run_id>/", views.run_page, name="training-run"),
    path("earnings/", views.earnings, name="earnings"),
    path("api/earnings", api.EarningsApi.as_view(), name="api-earnings"),
    path(
        "api/earnings/withdrawals", api.WithdrawalHintApi.as_view(), name="api-earnings-withdrawals"
    ),
    path("api/training-runs", api.TrainingRunListApi.as_view(), name="api-training-runs"),
    path(
        "api/training-runs/<id:run_id>",
        api.TrainingRunDetailApi.as_view(),
        name="api-training-run",
    ),
    path(
        "api/training-runs/<id:run_id>/funding",
        api.TrainingRunFundingApi.as_view(),
        name="api-training-run-funding",
    ),
    path(
        "api/training-runs/<id:run_id>/model",
        api.TrainingRunModelApi.as_view(),
        name="api-training-run-model",
    ),
    path(
        "api/training-runs/<id:run_id>/report",
        api.TrainingRunReportApi.as_view(),
        name="api-training-run-report",
    ),
]
