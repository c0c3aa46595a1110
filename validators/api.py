"""Public API of validation: the staked validators, a validator's open requests, and its answers
(each signed by the validator's own key, so it needs no account here)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api import (
    HEX_SIGNATURE,
    JSON_BODY,
    PUBLIC,
    SIGNATURE_REFUSAL,
    SOME_TEXT,
    TextField,
    record_id,
    responses,
)  # fmt: skip
from marketplace.errors import ApplicationError
from marketplace.throttling import THROTTLES
from validators import selectors, services

ADDRESS = r"\A0x[0-9a-fA-F]{40}\Z"
HASH32 = r"\A0x[0-9a-fA-F]{64}\Z"


class ValidatorListApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC))
    def get(self, request):
        return Response(selectors.validators_list())


class AttestationRequestListApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = THROTTLES
    throttle_scope = "attest"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "validator",
                {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
                OpenApiParameter.QUERY,
                required=True,
                description="The validator's address: its open requests, oldest first.",
            )
        ],
        responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC, 400, 429),
    )
    def get(self, request):
        import re

        address = request.query_params.get("validator", "")
        if not re.match(ADDRESS, address):
            raise ApplicationError(
                "Name the validator: ?validator=0x followed by its 40-digit hex address.",
                {"code": "bad_validator"},
            )
        return Response(selectors.open_requests_for(address))


class AnswerInput(serializers.Serializer):
    signature = TextField(pattern=HEX_SIGNATURE, refusal=SIGNATURE_REFUSAL)
    report_hash = TextField(
        required=False, pattern=HASH32,
        refusal=("report_hash must be 0x and 64 hex digits.", "bad_hash"),
    )  # fmt: skip
    payouts_hash = TextField(
        required=False, pattern=HASH32,
        refusal=("payouts_hash must be 0x and 64 hex digits.", "bad_hash"),
    )  # fmt: skip
    refusal = TextField(
        required=False, max_length=2000, pattern=SOME_TEXT,
        refusal=("A refusal needs a reason.", "bad_refusal"),
    )  # fmt: skip

    def validate(self, attrs):
        if not attrs.get("refusal") and not (
            attrs.get("report_hash") and attrs.get("payouts_hash")
        ):
            raise ApplicationError(
                "Send either report_hash and payouts_hash with the EIP-712 attestation's "
                "signature, or a refusal with the signed refusal message.",
                {"code": "incomplete_answer"},
            )
        return attrs


class AttestationAnswerApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = THROTTLES
    throttle_scope = "attest"

    @extend_schema(
        parameters=[record_id("request_id", "The attestation request.")],
        request=AnswerInput,
        responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC, *JSON_BODY, 403, 409, 429),
    )
    def post(self, request, request_id: int):
        data = AnswerInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        answered = services.attestation_answer_record(
            request_id=request_id,
            signature=values["signature"],
            report_hash=values.get("report_hash", ""),
            payouts_hash_hex=values.get("payouts_hash", ""),
            refusal=values.get("refusal", ""),
        )
        return Response({"id": answered.pk, "status": answered.status})
