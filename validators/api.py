"""Public API of validation: the staked validators, a validator's open requests, and its answers
(each signed by the validator's own key, so it needs no account here)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
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
ValidatorOut = inline_serializer(
    "Validator",
    {
        "address": serializers.CharField(),
        "did": serializers.CharField(),
        "stake_wei": serializers.CharField(),
        "status": serializers.ChoiceField(choices=["none", "active", "leaving", "removed"]),
        "status_label": serializers.CharField(),
        "attestations": serializers.IntegerField(),
        "slashed_wei": serializers.CharField(),
        "encryption_key": serializers.CharField(allow_null=True),
    },
    many=True,
)
AttestationRequestOut = inline_serializer(
    "AttestationRequest",
    {
        "id": serializers.IntegerField(),
        "run": serializers.IntegerField(),
        "job_id": serializers.CharField(),
        "buyer": serializers.CharField(),
        "funding_tx": serializers.CharField(),
        "funding_block": serializers.IntegerField(allow_null=True),
        "chain_id": serializers.IntegerField(),
        "validator": serializers.CharField(),
        "spec": serializers.DictField(),
        "sealed_keys": serializers.DictField(child=serializers.CharField()),
        "sealed_dp_seed": serializers.CharField(allow_null=True),
        "deadline": serializers.DateTimeField(),
        "status": serializers.CharField(),
    },
    many=True,
)
HASH32 = r"\A0x[0-9a-fA-F]{64}\Z"


class ValidatorListApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=responses({200: ValidatorOut}, *PUBLIC))
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
        responses=responses({200: AttestationRequestOut}, *PUBLIC, 400, 429),
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


class AttestationInput(serializers.Serializer):
    signature = TextField(pattern=HEX_SIGNATURE, refusal=SIGNATURE_REFUSAL)
    report_hash = TextField(
        pattern=HASH32, refusal=("report_hash must be 0x and 64 hex digits.", "bad_hash")
    )
    payouts_hash = TextField(
        pattern=HASH32, refusal=("payouts_hash must be 0x and 64 hex digits.", "bad_hash")
    )


class RefusalInput(serializers.Serializer):
    signature = TextField(pattern=HEX_SIGNATURE, refusal=SIGNATURE_REFUSAL)
    refusal = TextField(
        max_length=2000, pattern=SOME_TEXT, refusal=("A refusal needs a reason.", "bad_refusal")
    )


class _AnswerApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = THROTTLES
    throttle_scope = "attest"


class AttestationApi(_AnswerApi):
    @extend_schema(
        parameters=[record_id("request_id", "The attestation request.")],
        request=AttestationInput,
        responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC, *JSON_BODY, 403, 409, 429),
        description="The assigned validator's EIP-712 attestation of the run it re-computed.",
    )
    def post(self, request, request_id: int):
        data = AttestationInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        answered = services.attestation_answer_record(
            request_id=request_id, signature=values["signature"],
            report_hash=values["report_hash"], payouts_hash_hex=values["payouts_hash"],
        )  # fmt: skip
        return Response({"id": answered.pk, "status": answered.status})


class RefusalApi(_AnswerApi):
    @extend_schema(
        parameters=[record_id("request_id", "The attestation request.")],
        request=RefusalInput,
        responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC, *JSON_BODY, 403, 409, 429),
        description="The assigned validator's refusal and why, signed (EIP-191) by its key.",
    )
    def post(self, request, request_id: int):
        data = RefusalInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        answered = services.attestation_answer_record(
            request_id=request_id, signature=values["signature"], refusal=values["refusal"]
        )
        return Response({"id": answered.pk, "status": answered.status})
