"""Datasets API: upload, browse, detail (with the typed data to sign), signature, verify."""

from __future__ import annotations

from django.template.defaultfilters import filesizeformat
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework import status as http
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from datasets import selectors, services
from datasets.uploads import REFUSED_ATTRIBUTE
from marketplace.errors import ApplicationError

Created = inline_serializer(
    "DatasetCreated",
    {
        "id": serializers.IntegerField(),
        "status": serializers.CharField(),
        "url": serializers.CharField(),
    },
)
LIST_PARAMETERS = [
    OpenApiParameter("search", str, description="words in title, description, tags, columns"),
    OpenApiParameter("license", str, description="an SPDX identifier"),
    OpenApiParameter("tag", str),
    OpenApiParameter("owner", str, description="address or did:ethr"),
    OpenApiParameter("min_rows", int),
    OpenApiParameter("max_price_wei", str),
    OpenApiParameter(
        "ordering", str, enum=["created", "-created", "price_wei", "-price_wei", "rows", "-rows"]
    ),
    OpenApiParameter("page", int),
    OpenApiParameter("page_size", int, description="at most 100"),
]


class DatasetPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


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


class DatasetListApi(APIView):
    """GET: listed datasets (public). POST (multipart): list a new dataset."""

    parser_classes = [MultiPartParser, FormParser]

    class UploadInput(serializers.Serializer):
        file = serializers.FileField(allow_empty_file=True)
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(max_length=20_000, required=False, allow_blank=True)
        # Validated by the service, so the messages are the same for the browser form.
        license = serializers.CharField(max_length=64)
        price_wei = serializers.CharField(max_length=100)
        tags = serializers.ListField(
            child=serializers.CharField(max_length=400, allow_blank=True), required=False
        )
        parent = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    def get_permissions(self):
        if self.request.method == "GET":
            return [permissions.AllowAny()]
        return [permissions.IsAuthenticated()]

    @extend_schema(
        operation_id="datasets_list", parameters=LIST_PARAMETERS, responses=OpenApiTypes.OBJECT
    )
    def get(self, request):
        params = request.query_params
        number = selectors.page_number(params.get("page"), default=1)
        if number is None or number < 1:
            raise ApplicationError("The page must be a whole number from 1.", {"code": "bad_page"})
        size = selectors.page_number(params.get("page_size"), default=DatasetPagination.page_size)
        page = selectors.browse_page(
            params=params, number=number, page_size=size or DatasetPagination.page_size
        )
        if page.number != number:
            raise ApplicationError(
                f"There is no page {number}: the last is {page.num_pages}.",
                {"code": "no_such_page", "last_page": page.num_pages},
                status_code=http.HTTP_404_NOT_FOUND,
            )
        url = request.build_absolute_uri()
        return Response(
            {
                "count": page.count,
                "next": replace_query_param(url, "page", number + 1)
                if number < page.num_pages
                else None,
                "previous": (
                    remove_query_param(url, "page")
                    if number == 2
                    else replace_query_param(url, "page", number - 1)
                )
                if number > 1
                else None,
                "results": page.results,
            }
        )

    @extend_schema(operation_id="datasets_create", request=UploadInput, responses={201: Created})
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
        )
        return Response(
            {"id": dataset.pk, "status": dataset.status, "url": f"/api/datasets/{dataset.pk}"},
            status=http.HTTP_201_CREATED,
        )


class DatasetMineApi(APIView):
    """The signed-in owner's datasets, whatever their status."""

    @extend_schema(operation_id="datasets_mine", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        paginator = DatasetPagination()
        page = paginator.paginate_queryset(
            selectors.datasets_of_owner(owner=request.user), request, view=self
        )
        return paginator.get_paginated_response([selectors.dataset_summary(d) for d in page])


class DatasetDetailApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(operation_id="datasets_retrieve", responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        dataset = selectors.dataset_visible(dataset_id=pk, viewer=request.user)
        body = selectors.dataset_detail(dataset=dataset, viewer=request.user)
        if body["is_owner"] and dataset.status == dataset.Status.AWAITING_SIGNATURE:
            services.dataset_signing_refresh(dataset=dataset)
            body["signing_request"] = selectors.dataset_signing_request(dataset=dataset)
        return Response(body)


class DatasetSignatureApi(APIView):
    class SignatureInput(serializers.Serializer):
        signature = serializers.CharField(max_length=200)

    @extend_schema(
        operation_id="datasets_signature", request=SignatureInput, responses=OpenApiTypes.OBJECT
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

    @extend_schema(operation_id="datasets_verify", request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, pk: int):
        dataset = selectors.dataset_visible(dataset_id=pk, viewer=request.user)
        return Response(selectors.dataset_verify(dataset=dataset))
