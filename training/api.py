"""Training runs API."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets.models import DP_EPSILON_MAX, DP_EPSILON_MIN
from marketplace.api import (
    DB_ID_MAX,
    JSON_BODY,
    MAX_PAGE,
    SIGNED_IN,
    TX_HASH,
    TX_HASH_REFUSAL,
    JsonBooleanField,
    JsonNumberField,
    TextField,
    WholeNumberField,
    checked_page,
    paginated,
    record_id,
    responses,
)
from marketplace.errors import ApplicationError
from training import catalog, selectors, services

RunIdParameter = record_id("run_id", "A training run's id.")
PageParameter = OpenApiParameter(
    "page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, OpenApiParameter.QUERY
)
TEST_FRACTION = (0.05, 0.5)
ALL_MODELS = sorted({model for models in catalog.MODELS.values() for model in models})


class DatasetIdsField(serializers.ListField):
    """The datasets a run combines: ids, each once, at most MAX_DATASETS of them."""

    def __init__(self, **kwargs):
        super().__init__(
            child=WholeNumberField(min_value=1, max_value=DB_ID_MAX), min_length=1, **kwargs
        )

    def to_internal_value(self, data):
        ids = super().to_internal_value(data)
        # The service's own refusals, so both say it the same way.
        if len(set(ids)) != len(ids):
            raise ApplicationError("A dataset is listed twice.", {"code": "duplicate_dataset"})
        if len(ids) > services.MAX_DATASETS:
            raise ApplicationError(
                f"A run combines at most {services.MAX_DATASETS} datasets.",
                {"code": "too_many_datasets"},
            )
        return ids


def _run_input_schema() -> dict:
    """RunInput as the schema states it: a model of the task named, or of either task when the
    task is left to be inferred from the target."""
    common = {
        "dataset_ids": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": DB_ID_MAX},
            "minItems": 1,
            "maxItems": services.MAX_DATASETS,
            "uniqueItems": True,
        },
        "target_column": {
            "type": "string",
            "maxLength": 200,
            "pattern": r"^[^\u0000]*[^\s\u0000][^\u0000]*$",
        },
        "test_fraction": {
            "type": "number",
            "minimum": TEST_FRACTION[0],
            "maximum": TEST_FRACTION[1],
            "default": 0.25,
        },
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "dp_epsilon": {
            "type": "number",
            "minimum": DP_EPSILON_MIN,
            "maximum": DP_EPSILON_MAX,
            "nullable": True,
            "default": None,
            "description": "Train with differential privacy at this epsilon (null: without). "
            "Required, at most the smallest dp_epsilon_max, when a dataset sets one.",
        },
        "curate": {
            "type": "boolean",
            "default": False,
            "description": "Leave the training rows the valuation finds harmful (e.g. wrong "
            "labels) out of the final fit; they earn nothing. Not with dp_epsilon.",
        },
    }
    variants = [
        {
            "type": "object",
            "properties": {
                **common,
                "task": {"type": "string", "enum": [task]},
                "model": {"type": "string", "enum": list(models)},
            },
            "required": ["dataset_ids", "target_column", "model", "task"],
        }
        for task, models in catalog.MODELS.items()
    ]
    variants.append(
        {
            "type": "object",
            "properties": {**common, "model": {"type": "string", "enum": ALL_MODELS}},
            "required": ["dataset_ids", "target_column", "model"],
            "not": {"required": ["task"]},
        }
    )
    return {"oneOf": variants}


EscrowOut = inline_serializer(
    "EscrowRequest",
    {
        "chain_id": serializers.IntegerField(),
        "address": serializers.CharField(),
        "value_wei": serializers.CharField(),
        "data": serializers.CharField(),
    },
)
QuoteOut = inline_serializer(
    "TrainingRunQuote",
    {
        "id": serializers.IntegerField(),
        "status": serializers.CharField(),
        "task": serializers.CharField(),
        "price_wei": serializers.CharField(),
        "breakdown": inline_serializer(
            "TrainingRunPrice",
            {
                "dataset_id": serializers.IntegerField(),
                "listing_id": serializers.IntegerField(),
                "price_wei": serializers.CharField(),
            },
            many=True,
        ),
        "compute_fee_wei": serializers.CharField(),
        "dp_epsilon": serializers.FloatField(allow_null=True),
        "curate": serializers.BooleanField(),
        "escrow": EscrowOut,
    },
)


class RunPageParams(serializers.Serializer):
    page = WholeNumberField(as_text=True, min_value=1, max_value=MAX_PAGE, required=False)


class TrainingRunListApi(APIView):
    class RunInput(serializers.Serializer):
        dataset_ids = DatasetIdsField()
        target_column = TextField(max_length=200)
        # The service names the models of the task in its refusal.
        model = TextField(max_length=40)
        task = serializers.ChoiceField(choices=list(catalog.MODELS), required=False)
        test_fraction = JsonNumberField(
            required=False,
            min_value=TEST_FRACTION[0],
            max_value=TEST_FRACTION[1],
            refusal=("The test fraction must be between 0.05 and 0.5.", "bad_test_fraction"),
        )
        seed = WholeNumberField(min_value=0, max_value=2**31 - 1, required=False)
        dp_epsilon = JsonNumberField(
            required=False, allow_null=True, min_value=DP_EPSILON_MIN, max_value=DP_EPSILON_MAX,
            refusal=(f"Epsilon must be a number from {DP_EPSILON_MIN} to {DP_EPSILON_MAX:g}.",
                     "bad_dp_epsilon"),
        )  # fmt: skip
        curate = JsonBooleanField(required=False, default=False)

    @extend_schema(
        request={"application/json": _run_input_schema()},
        responses=responses({201: QuoteOut}, *SIGNED_IN, *JSON_BODY, 409, 503),
    )
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
                "dp_epsilon": run.dp_epsilon,
                "curate": run.curate,
                "escrow": services.training_run_escrow_request(run),
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        operation_id="training_runs_list",
        parameters=[PageParameter],
        responses=responses({200: OpenApiTypes.OBJECT}, *SIGNED_IN, 400),
    )
    def get(self, request):
        number, _ = checked_page(request.query_params, RunPageParams)
        return paginated(
            request,
            selectors.runs_of_buyer(request.user),
            number=number,
            size=20,
            render=selectors.run_detail,
        )


class TrainingRunDetailApi(APIView):
    @extend_schema(
        parameters=[RunIdParameter],
        responses=responses({200: OpenApiTypes.OBJECT}, *SIGNED_IN),
    )
    def get(self, request, run_id: int):
        run = selectors.run_for(request.user, run_id)
        body = selectors.run_detail(run)
        if run.status == run.Status.AWAITING_PAYMENT and run.buyer_id == request.user.pk:
            body["escrow"] = services.training_run_escrow_request(run)
        return Response(body)


class TxHashInput(serializers.Serializer):
    tx_hash = TextField(pattern=TX_HASH, refusal=TX_HASH_REFUSAL)


class TrainingRunFundingApi(APIView):
    @extend_schema(
        parameters=[RunIdParameter],
        request=TxHashInput,
        responses=responses({200: OpenApiTypes.OBJECT}, *SIGNED_IN, *JSON_BODY, 409, 503),
    )
    def post(self, request, run_id: int):
        data = TxHashInput(data=request.data)
        data.is_valid(raise_exception=True)
        run = selectors.run_for(request.user, run_id, buyer_only=True)
        run = services.training_run_funding_hint(run=run, tx_hash=data.validated_data["tx_hash"])
        return Response(selectors.run_detail(run))


class TrainingRunModelApi(APIView):
    @extend_schema(
        parameters=[RunIdParameter],
        responses=responses(
            {(200, "application/octet-stream"): OpenApiTypes.BINARY}, *SIGNED_IN, 409, 502, 503
        ),
    )
    def get(self, request, run_id: int):
        run = selectors.run_for(request.user, run_id, buyer_only=True)
        response = HttpResponse(
            selectors.run_model_bytes(run), content_type="application/octet-stream"
        )
        response["Content-Disposition"] = f'attachment; filename="model-run-{run.pk}.skops"'
        return response


class TrainingRunReportApi(APIView):
    @extend_schema(
        parameters=[RunIdParameter],
        responses=responses({200: OpenApiTypes.OBJECT}, *SIGNED_IN, 409),
    )
    def get(self, request, run_id: int):
        run = selectors.run_for(request.user, run_id)
        if not run.report:
            raise ApplicationError(
                "The report is not ready yet.", {"code": "not_ready"}, status_code=409
            )
        return HttpResponse(services.report_json(run), content_type="application/json")


def _wallet_user(request) -> None:
    if not request.user.address:
        raise ApplicationError(
            "Sign in with a wallet to see earnings.", {"code": "no_wallet"}, status_code=403
        )


class EarningsApi(APIView):
    @extend_schema(
        parameters=[PageParameter],
        responses=responses({200: OpenApiTypes.OBJECT}, *SIGNED_IN, 400, 503),
    )
    def get(self, request):
        from training.earnings import earnings_for

        _wallet_user(request)
        number, _ = checked_page(request.query_params, RunPageParams)
        return Response(earnings_for(request.user, page=number))


class WithdrawalHintApi(APIView):
    @extend_schema(
        request=TxHashInput,
        responses=responses({200: OpenApiTypes.OBJECT}, *SIGNED_IN, *JSON_BODY, 409, 503),
    )
    def post(self, request):
        from training.earnings import earnings_for, withdrawal_hint

        data = TxHashInput(data=request.data)
        data.is_valid(raise_exception=True)
        withdrawal_hint(user=request.user, tx_hash=data.validated_data["tx_hash"])
        return Response(earnings_for(request.user))
