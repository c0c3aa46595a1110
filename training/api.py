"""Training runs API."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from training import selectors, services


class TrainingRunListApi(APIView):
    class RunInput(serializers.Serializer):
        dataset_ids = serializers.ListField(
            child=serializers.IntegerField(min_value=1), min_length=1
        )
        target_column = serializers.CharField(max_length=200)
        model = serializers.CharField(max_length=40)
        task = serializers.ChoiceField(choices=["classification", "regression"], required=False)
        test_fraction = serializers.FloatField(required=False)
        seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)

    @extend_schema(request=RunInput, responses={201: OpenApiTypes.OBJECT})
    def post(self, request):
        data = self.RunInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.training_run_create(buyer=request.user, **data.validated_data)
        inputs = list(run.inputs.order_by("position"))
        return Response(
            {
                "id": run.pk,
                "status": run.status,
                "task": run.task,
                "price_wei": str(run.price_wei),
                "breakdown": [
                    {
                        "dataset_id": e.dataset_id,
                        "listing_id": e.listing_id,
                        "price_wei": str(e.price_wei),
                    }
                    for e in inputs
                ],
                "compute_fee_wei": str(run.compute_fee_wei),
                "escrow": services.training_run_escrow_request(run),
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(operation_id="training_runs_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            selectors.runs_of_buyer(request.user), request, view=self
        )
        return paginator.get_paginated_response([selectors.run_detail(run) for run in page])


class TrainingRunDetailApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, run_id: int):
        run = selectors.run_for(request.user, run_id)
        body = selectors.run_detail(run)
        if run.status == run.Status.AWAITING_PAYMENT and run.buyer_id == request.user.pk:
            body["escrow"] = services.training_run_escrow_request(run)
        return Response(body)


class TrainingRunFundingApi(APIView):
    class FundingInput(serializers.Serializer):
        tx_hash = serializers.CharField(max_length=66)

    @extend_schema(request=FundingInput, responses=OpenApiTypes.OBJECT)
    def post(self, request, run_id: int):
        data = self.FundingInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = selectors.run_for(request.user, run_id, buyer_only=True)
        run = services.training_run_funding_hint(run=run, tx_hash=data.validated_data["tx_hash"])
        return Response(selectors.run_detail(run))


class TrainingRunModelApi(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, run_id: int):
        run = selectors.run_for(request.user, run_id, buyer_only=True)
        response = HttpResponse(
            selectors.run_model_bytes(run), content_type="application/octet-stream"
        )
        response["Content-Disposition"] = f'attachment; filename="model-run-{run.pk}.skops"'
        return response


class TrainingRunReportApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, run_id: int):
        run = selectors.run_for(request.user, run_id)
        if not run.report:
            return Response({"message": "The report is not ready yet.", "extra": {}}, status=409)
        return HttpResponse(services.report_json(run), content_type="application/json")


class EarningsApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        from training.earnings import earnings_for

        if not request.user.address:
            return Response(
                {"message": "Sign in with a wallet to see earnings.", "extra": {}}, status=403
            )
        page = request.query_params.get("page", "1")
        return Response(earnings_for(request.user, page=int(page) if page.isdigit() else 1))


class WithdrawalHintApi(APIView):
    class WithdrawalInput(serializers.Serializer):
        tx_hash = serializers.CharField(max_length=66)

    @extend_schema(request=WithdrawalInput, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        from training.earnings import earnings_for, withdrawal_hint

        data = self.WithdrawalInput(data=request.data)
        data.is_valid(raise_exception=True)
        withdrawal_hint(user=request.user, tx_hash=data.validated_data["tx_hash"])
        return Response(earnings_for(request.user))
