"""Datasets API: upload, browse, detail (with the typed data to sign), signature, verify."""

from __future__ import annotations

from django.template.defaultfilters import filesizeformat
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiRequest,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import permissions, serializers
from rest_framework import status as http
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors, services
from datasets.models import DP_EPSILON_MAX, DP_EPSILON_MIN, LICENSES, MAX_PRICE_WEI
from datasets.uploads import REFUSED_ATTRIBUTE
from marketplace.api import (
    DB_ID_MAX,
    HEX_SIGNATURE,
    JSON_BODY,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    NO_NUL_SCHEMA,
    PUBLIC,
    SIGNATURE_REFUSAL,
    SIGNED_IN,
    PageParams,
    TextField,
    WholeNumberField,
    checked_page,
    no_such_page,
    page_answer,
    paginated,
    record_id,
    responses,
)
from marketplace.errors import ApplicationError
from marketplace.throttling import THROTTLES

LICENSE_CODES = [code for code, _ in LICENSES]
# One tag: what datasets.services.parse_tags accepts once it lower-cases and collapses spaces.
_TAG = r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,31}"
TAG_LIST = rf"\A *(?:{_TAG} *(?:, *{_TAG} *){{0,{services.MAX_TAGS - 1}}})?\Z"
# 0.01 to 100 written in decimals (the range of datasets.models.dp_epsilon_refusal).
# Blank is "no requirement", as a form's empty field is.
DP_EPSILON_TEXT = (
    r"^(?:|100(?:\.0{1,6})?|[1-9][0-9]?(?:\.[0-9]{1,6})?|0\.(?:0[1-9][0-9]{0,4}|[1-9][0-9]{0,5}))$"
)
DP_EPSILON_REFUSAL = f"Epsilon must be a number from {DP_EPSILON_MIN} to {DP_EPSILON_MAX:g}."
UPLOAD_NAMES = ", ".join(sorted(services.ACCEPTED_EXTENSIONS))

# --- what the answers hold ----------------------------------------------------------------------

OwnerOut = inline_serializer(
    "DatasetOwner",
    {"address": serializers.CharField(), "did": serializers.CharField(allow_null=True)},
)
SUMMARY_FIELDS = {
    "id": serializers.IntegerField(),
    "title": serializers.CharField(),
    "excerpt": serializers.CharField(),
    "license": serializers.CharField(),
    "tags": serializers.ListField(child=serializers.CharField()),
    "price_wei": serializers.CharField(help_text="wei, as decimal digits"),
    "owner": OwnerOut,
    "rows": serializers.IntegerField(allow_null=True),
    "columns": serializers.IntegerField(allow_null=True),
    "status": serializers.CharField(),
    "stage": serializers.CharField(),
    "progress": serializers.IntegerField(),
    "status_message": serializers.CharField(),
    "cid": serializers.CharField(allow_null=True),
    "listing_id": serializers.IntegerField(allow_null=True),
    "created": serializers.DateTimeField(),
    "listed_at": serializers.DateTimeField(allow_null=True),
}
PageOut = inline_serializer(
    "DatasetPage",
    {
        "count": serializers.IntegerField(
            help_text="The matching datasets; an estimate when count_exact is false."
        ),
        "count_exact": serializers.BooleanField(
            help_text="False when the matches are too many to count on every request: `count` "
            "is then the database's estimate, rounded (never below what the pages so far hold)."
        ),
        "next": serializers.CharField(allow_null=True),
        "previous": serializers.CharField(allow_null=True),
        "results": inline_serializer("DatasetSummary", SUMMARY_FIELDS, many=True),
    },
)
Created = inline_serializer(
    "DatasetCreated",
    {
        "id": serializers.IntegerField(),
        "status": serializers.CharField(),
        "url": serializers.CharField(),
    },
)
SignatureAccepted = inline_serializer(
    "DatasetSignatureAccepted",
    {"id": serializers.IntegerField(), "status": serializers.CharField()},
)
DatasetIdParameter = record_id("id", "A dataset's id.")


SEARCH_HELP = (
    "Words, each matching the start of a word of the title, description, tags or column names "
    "(any case); all must match. A word without a letter or digit is left out."
)


# --- query parameters, checked as documented -----------------------------------------------------


class BrowseParams(PageParams):
    search = TextField(
        max_length=200, allow_blank=True, required=False,
        help_text=SEARCH_HELP,
    )  # fmt: skip
    license = serializers.ChoiceField(
        choices=LICENSE_CODES, allow_blank=True, required=False, help_text="An SPDX identifier."
    )
    tag = TextField(max_length=40, allow_blank=True, required=False)
    owner = TextField(
        max_length=80, allow_blank=True, required=False, help_text="An address or a did:ethr."
    )
    min_rows = WholeNumberField(as_text=True, min_value=0, max_value=10**18 - 1, required=False)
    max_price_wei = TextField(
        pattern=r"\A[0-9]{0,78}\Z", allow_blank=True, required=False, help_text="wei, in digits"
    )
    ordering = serializers.ChoiceField(
        choices=list(selectors.ORDERINGS), allow_blank=True, required=False
    )


def _query(name: str, schema: dict, description: str = "") -> OpenApiParameter:
    return OpenApiParameter(name, schema, OpenApiParameter.QUERY, description=description)


TEXT_QUERY = {"type": "string", "pattern": NO_NUL_SCHEMA}
PAGE_QUERY = [
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    _query("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}),
]
# Documented one by one: an empty value means "any", which a serializer's blank rule would not say.
BROWSE_QUERY = [
    _query(
        "search",
        {**TEXT_QUERY, "maxLength": 200},
        SEARCH_HELP,
    ),
    _query("license", {"type": "string", "enum": ["", *LICENSE_CODES]}, "An SPDX identifier."),
    _query("tag", {**TEXT_QUERY, "maxLength": 40}),
    _query("owner", {**TEXT_QUERY, "maxLength": 80}, "An address or a did:ethr."),
    _query("min_rows", {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}),
    _query("max_price_wei", {"type": "string", "pattern": "^[0-9]{0,78}$"}, "wei, in digits"),
    _query("ordering", {"type": "string", "enum": ["", *selectors.ORDERINGS]}),
    *PAGE_QUERY,
]


def upload_size_refusal(request) -> ApplicationError | None:
    """The answer for an upload the upload handler dropped for its size, if it did."""
    from django.conf import settings

    if getattr(request, REFUSED_ATTRIBUTE, None) is None:
        return None
    limit = filesizeformat(settings.DATASET_MAX_UPLOAD_BYTES)
    return ApplicationError(
        f"The file is larger than the upload limit of {limit}.",
        {"code": "file_too_large", "limit_bytes": settings.DATASET_MAX_UPLOAD_BYTES},
        status_code=http.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


@extend_schema_field({"type": "string", "format": "binary", "minLength": 1})
class UploadField(serializers.FileField):
    """The file; the service names an empty one or one of another type in its refusal."""


@extend_schema_field({"type": "string", "enum": LICENSE_CODES})
class LicenseField(TextField):
    """One of LICENSES; the service's refusal lists them."""


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": MAX_PRICE_WEI})
class PriceWeiField(TextField):
    """Whole wei up to what the registry holds, as digits; refused with the service's reasons."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        services.parse_price_wei(value)  # its refusal says what is wrong
        if not value.isascii() or not value.isdigit():  # e.g. " 5": the service would strip it
            self.fail("invalid")
        return value


class DatasetListApi(APIView):
    """GET: listed datasets (public). POST (multipart): list a new dataset."""

    parser_classes = [MultiPartParser]

    class UploadInput(serializers.Serializer):
        file = UploadField(
            allow_empty_file=True,
            help_text=f"CSV or Parquet; the part's filename ends in one of {UPLOAD_NAMES}.",
        )
        title = TextField(max_length=200)
        description = TextField(
            max_length=20_000, required=False, allow_blank=True, help_text="Markdown"
        )
        license = LicenseField(max_length=64)
        price_wei = PriceWeiField(max_length=100)
        tags = TextField(
            pattern=TAG_LIST, required=False, allow_blank=True,
            help_text=f"Up to {services.MAX_TAGS} tags, separated by commas.",
        )  # fmt: skip
        feature_opt_in = TextField(
            max_length=5000, required=False, allow_blank=True,
            help_text="Comma-separated columns that models may use although the listing flags "
            "them as personal data or identifiers; left out of every model otherwise.",
        )  # fmt: skip
        parent = WholeNumberField(
            as_text=True, min_value=1, max_value=DB_ID_MAX, required=False,
            help_text="One of your listed datasets that this one is a new version of.",
        )  # fmt: skip
        dp_epsilon_max = TextField(
            pattern=DP_EPSILON_TEXT, required=False, allow_blank=True,
            refusal=(DP_EPSILON_REFUSAL, "bad_dp_epsilon"),
            help_text=f"Runs on this data must be differentially private with at most this "
            f"epsilon ({DP_EPSILON_MIN} to {DP_EPSILON_MAX:g}, up to 6 decimals).",
        )  # fmt: skip

    throttle_scope = "upload"

    def get_throttles(self):
        return [] if self.request.method == "GET" else [t() for t in THROTTLES]

    def get_permissions(self):
        if self.request.method == "GET":
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    @extend_schema(
        operation_id="datasets_list",
        parameters=BROWSE_QUERY,
        responses=responses({200: PageOut}, *PUBLIC, 400),
    )
    def get(self, request):
        number, size = checked_page(request.query_params, BrowseParams)
        page = selectors.browse_page(params=request.query_params, number=number, page_size=size)
        if page.number != number:
            raise no_such_page(number, page.num_pages)
        answer = page_answer(
            request, number=number, pages=page.num_pages, count=page.count, results=page.results
        )
        answer.data = {"count": page.count, "count_exact": page.count_exact, **answer.data}
        return answer

    @extend_schema(
        operation_id="datasets_create",
        request=OpenApiRequest(
            UploadInput,
            encoding={
                "file": {
                    "contentType": "text/csv, application/vnd.apache.parquet, "
                    "application/octet-stream",
                    "headers": {
                        "Content-Disposition": {
                            "schema": {"type": "string"},
                            "example": 'form-data; name="file"; filename="data.csv"',
                        }
                    },
                }
            },
        ),
        responses=responses({201: Created}, *SIGNED_IN, 400, 409, 413, 415, 429, 503),
    )
    def post(self, request):
        data = request.data  # parses the upload (streamed to disk)
        refusal = upload_size_refusal(request._request)
        if refusal:
            raise refusal
        form = self.UploadInput(data=data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        upload = values["file"]
        dataset = services.dataset_create(
            owner=request.user,
            upload=upload,
            original_filename=upload.name,
            title=values["title"],
            description=values.get("description", ""),
            license=values["license"],
            price_wei=values["price_wei"],
            tags=values.get("tags"),
            parent_id=values.get("parent"),
            feature_opt_in=values.get("feature_opt_in"),
            dp_epsilon_max=(
                float(values["dp_epsilon_max"]) if values.get("dp_epsilon_max") else None
            ),
        )
        return Response(
            {"id": dataset.pk, "status": dataset.status, "url": f"/api/datasets/{dataset.pk}"},
            status=http.HTTP_201_CREATED,
        )


class DatasetMineApi(APIView):
    """The signed-in owner's datasets, whatever their status."""

    @extend_schema(
        operation_id="datasets_mine",
        parameters=PAGE_QUERY,
        responses=responses({200: PageOut}, *SIGNED_IN, 400),
    )
    def get(self, request):
        number, size = checked_page(request.query_params)
        answer = paginated(
            request,
            selectors.datasets_of_owner(owner=request.user),
            number=number,
            size=size,
            render=selectors.dataset_summary,
        )
        answer.data = {"count_exact": True, **answer.data}  # an owner's own are always counted
        return answer


class DatasetDetailApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="datasets_retrieve",
        parameters=[DatasetIdParameter],
        responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC, 503),
    )
    def get(self, request, pk: int):
        dataset = selectors.dataset_visible(dataset_id=pk, viewer=request.user)
        body = selectors.dataset_detail(dataset=dataset, viewer=request.user)
        if body["is_owner"] and dataset.status == dataset.Status.AWAITING_SIGNATURE:
            services.dataset_signing_refresh(dataset=dataset)
            body["signing_request"] = selectors.dataset_signing_request(dataset=dataset)
        return Response(body)


class DatasetSignatureApi(APIView):
    class SignatureInput(serializers.Serializer):
        signature = TextField(
            pattern=HEX_SIGNATURE,
            refusal=SIGNATURE_REFUSAL,
            help_text="The owner's eth_signTypedData_v4 signature.",
        )

    @extend_schema(
        operation_id="datasets_signature",
        parameters=[DatasetIdParameter],
        request=SignatureInput,
        responses=responses({202: SignatureAccepted}, *SIGNED_IN, *JSON_BODY, 409, 503),
    )
    def post(self, request, pk: int):
        form = self.SignatureInput(data=request.data)
        form.is_valid(raise_exception=True)
        dataset = services.dataset_signature_submit(
            dataset_id=pk, user=request.user, signature=form.validated_data["signature"]
        )
        return Response({"id": dataset.pk, "status": dataset.status}, status=http.HTTP_202_ACCEPTED)


class DatasetVerifyApi(APIView):
    """Anyone may check a listing against IPFS and the chain."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = THROTTLES
    throttle_scope = "verify"

    @extend_schema(
        operation_id="datasets_verify",
        parameters=[DatasetIdParameter],
        request=None,
        responses=responses({200: OpenApiTypes.OBJECT}, *PUBLIC, 409, 429, 503),
    )
    def post(self, request, pk: int):
        dataset = selectors.dataset_visible(dataset_id=pk, viewer=request.user)
        return Response(selectors.dataset_verify(dataset=dataset))
