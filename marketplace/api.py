"""Identity API: Sign-In with Ethereum, the signed-in identity, DID documents; and what every
API module shares to keep its schema the contract: fields that parse exactly what they document,
and the documented error answers."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth import login, logout
from django.core.paginator import Paginator
from django.core.validators import RegexValidator
from django.http import JsonResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import permissions, serializers
from rest_framework.authentication import CSRFCheck, TokenAuthentication
from rest_framework.fields import empty
from rest_framework.response import Response
from rest_framework.utils import html
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.errors import ApplicationError
from marketplace.throttling import THROTTLES

# --- fields that accept exactly what the schema says ---------------------------------------------

# Validators spell anchors \A and \Z (Python's $ also matches before a final newline);
# drf-spectacular writes them as ^ and $ in the schema, which mean the same in JSON Schema.
NO_NUL = r"\A[^\x00]*\Z"
SOME_TEXT = r"\A[^\x00]*[^\s\x00][^\x00]*\Z"  # something besides whitespace, and no NUL
NO_NUL_SCHEMA = "^[^\\u0000]*$"  # NO_NUL as the schema writes it
HEX_SIGNATURE = r"\A0x[0-9a-fA-F]{130}\Z"
SIGNATURE_REFUSAL = (
    "The signature is malformed: expected 0x and 130 hex digits.",
    "signature_malformed",
)
TX_HASH = r"\A0x[0-9a-fA-F]{64}\Z"
TX_HASH_REFUSAL = (
    "The transaction hash is malformed: expected 0x and 64 hex digits.",
    "bad_tx_hash",
)
DB_ID_MAX = 2**63 - 1  # the largest primary key the database holds
_DIGITS = re.compile(r"-?[0-9]{1,30}")


class RefusalMixin:
    """`refusal=(message, code)`: a value given but not valid is refused with the service's own
    sentence and code (so the API and the pages word a refusal alike). A dict maps DRF's error
    codes (e.g. "max_length") to refusals, with "*" for any other."""

    def __init__(self, *args, refusal: tuple[str, str] | dict | None = None, **kwargs):
        self.refusal = refusal
        super().__init__(*args, **kwargs)

    def run_validation(self, data=empty):
        try:
            return super().run_validation(data)
        except serializers.ValidationError as exc:
            if self.refusal is None or data is empty or data is None:
                raise
            refusals = self.refusal if isinstance(self.refusal, dict) else {"*": self.refusal}
            codes = exc.get_codes()
            first = codes[0] if isinstance(codes, list) and codes else "*"
            message, code = refusals.get(first, refusals["*"])
            raise ApplicationError(message, {"code": code}) from None


class TextField(RefusalMixin, serializers.CharField):
    """Text as given (no trimming, so a length limit is the documented one), a JSON string only;
    NUL refused and, unless blank is allowed, something besides whitespace required. The
    pattern documents all of it (blank is not left to a second schema that "" also matches)."""

    def __init__(self, *, pattern: str | None = None, allow_blank: bool = False, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        self.blank_ok = allow_blank
        kwargs.setdefault("validators", []).append(
            RegexValidator(
                pattern or (NO_NUL if allow_blank else SOME_TEXT), "This value is not valid."
            )
        )
        super().__init__(**kwargs)

    def run_validation(self, data=empty):
        if data == "" and self.blank_ok:
            self.run_validators("")
            return ""
        return super().run_validation(data)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WholeNumberField(RefusalMixin, serializers.IntegerField):
    """An integer: a JSON number, or plain digits in a form or a query (never "5.0" or " 5")."""

    def __init__(self, *, as_text: bool = False, **kwargs):
        self.as_text = as_text
        super().__init__(**kwargs)

    def get_value(self, dictionary):
        # DRF reads an empty form or query value as "not given"; it is a value that is not a number.
        given = dictionary.get(self.field_name) if html.is_html_input(dictionary) else None
        if self.as_text and given == "":
            return ""
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        if self.as_text:
            if not (isinstance(data, str) and _DIGITS.fullmatch(data)):
                self.fail("invalid")
        elif isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonBooleanField(serializers.BooleanField):
    """true or false, not "yes", 1 or "on"."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class JsonNumberField(RefusalMixin, serializers.FloatField):
    """A JSON number, not a string holding one."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class RecordIdConverter:
    """A path segment holding a row's id: 1 to 19 digits, at most the largest key."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > DB_ID_MAX:
            raise ValueError("larger than any id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def record_id(name: str, description: str = "") -> OpenApiParameter:
    """A path parameter holding a row's id: 1 up to the database's largest."""
    return OpenApiParameter(
        name,
        {"type": "integer", "minimum": 1, "maximum": DB_ID_MAX},
        OpenApiParameter.PATH,
        description=description,
    )


# --- pages of a list ------------------------------------------------------------------------------

MAX_PAGE = 10**9 - 1  # page numbers the pages parse (fewer than ten digits)
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class PageParams(serializers.Serializer):
    page = WholeNumberField(as_text=True, min_value=1, max_value=MAX_PAGE, required=False)
    page_size = WholeNumberField(as_text=True, min_value=1, max_value=MAX_PAGE_SIZE, required=False)


def checked_page(params, form_class=PageParams) -> tuple[int, int]:
    """(page, page size) from query parameters, or the 400 naming the one that is not valid."""
    form = form_class(data=params)
    if not form.is_valid():
        fields = form.errors
        if "page" in fields:
            raise ApplicationError("The page must be a whole number from 1.", {"code": "bad_page"})
        if "page_size" in fields:
            raise ApplicationError(
                f"The page size must be a whole number from 1 to {MAX_PAGE_SIZE}.",
                {"code": "bad_page_size"},
            )
        name, problems = next(iter(fields.items()))
        raise ApplicationError(
            f"The {name.replace('_', ' ')} filter is not valid: {problems[0]}",
            {"code": "bad_filter", "fields": fields},
        )
    values = form.validated_data
    return values.get("page", 1), values.get("page_size", DEFAULT_PAGE_SIZE)


def no_such_page(number: int, last: int) -> ApplicationError:
    return ApplicationError(
        f"There is no page {number}: the last is {last}.",
        {"code": "no_such_page", "last_page": last},
        status_code=404,
    )


def page_answer(request, *, number: int, pages: int, count: int, results: list) -> Response:
    """A page of a list as every list answers it: count, links to its neighbours, results."""
    if number > pages:
        raise no_such_page(number, pages)
    url = request.build_absolute_uri()
    return Response(
        {
            "count": count,
            "next": replace_query_param(url, "page", number + 1) if number < pages else None,
            "previous": (
                remove_query_param(url, "page")
                if number == 2
                else replace_query_param(url, "page", number - 1)
            )
            if number > 1
            else None,
            "results": results,
        }
    )


def paginated(request, items, *, number: int, size: int, render) -> Response:
    """Page `number` of `items` (a queryset), each shown by `render`."""
    paginator = Paginator(items, size)
    if number > paginator.num_pages:
        raise no_such_page(number, paginator.num_pages)
    page = paginator.page(number)
    return page_answer(
        request,
        number=number,
        pages=paginator.num_pages,
        count=paginator.count,
        results=[render(item) for item in page],
    )


class ContractSchema(AutoSchema):
    """drf-spectacular's schema, with a POST's body required whenever it has one (every POST
    that reads a body refuses to go without it; a raw or polymorphic body would say optional)."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body and self.method == "POST":
            body["required"] = True
        return body


# --- the documented answers ----------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """Every answer that is not a success: a sentence for a person, details for a program."""

    message = serializers.CharField()
    extra = serializers.DictField(
        help_text='Details: "code" (a stable name for the reason), "fields" (per-field messages '
        'for a request that is not valid), "part" (the node that is down, for a 503).'
    )


ERROR_DESCRIPTIONS = {
    400: "The request is not valid: `extra.fields` names what is wrong.",
    401: "Not signed in, or the sign-in did not verify.",
    403: "Signed in, but not allowed to do this (or a browser session without its CSRF token).",
    404: "There is no such resource.",
    405: "The method is not allowed here.",
    409: "The resource is not in a state that allows this.",
    413: "The upload is larger than the limit.",
    415: "The request body's media type is not one this operation reads.",
    429: "Too many requests from this address or identity: the Retry-After header says when "
    "to try again.",
    502: "A node answered with something other than what was recorded.",
    503: 'A node the marketplace depends on is down: `extra.part` is "chain", "ipfs" or "redis".',
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an operation, all with the ErrorSerializer body."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in statuses
    }


# Every operation can answer these: a path that matches no route, a method it does not serve.
COMMON = (404, 405)
PUBLIC = (*COMMON, 401)  # open to all, but a request with a bad token is refused
SIGNED_IN = (*COMMON, 401, 403)  # 403: a session without its CSRF token
JSON_BODY = (400, 415)


def responses(ok: dict, *statuses: int) -> dict:
    return {**ok, **errors(*sorted(set(statuses)))}


# --- identity -----------------------------------------------------------------------------------

ProfileOut = inline_serializer(
    "Profile",
    {
        "did": serializers.CharField(allow_null=True),
        "address": serializers.CharField(allow_null=True),
        "display_name": serializers.CharField(),
        "joined": serializers.DateTimeField(),
    },
)
TxRequestOut = inline_serializer(
    "TxRequest",
    {
        "chain_id": serializers.IntegerField(),
        "to": serializers.CharField(),
        "data": serializers.CharField(),
        "value_wei": serializers.CharField(),
    },
)
MessageOut = inline_serializer("Message", {"message": serializers.CharField()})


class NonceApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = THROTTLES
    throttle_scope = "nonce"

    @extend_schema(
        responses=responses(
            {200: inline_serializer("Nonce", {"nonce": serializers.CharField()})}, *COMMON, 429
        )
    )
    def get(self, request):
        return Response({"nonce": services.login_nonce_issue()})


class LoginApi(APIView):
    """POST {"message": <EIP-4361 text>, "signature": "0x..."} -> {"token", "did", "address"}.
    With "session": true (the browser), a session cookie is set instead of returning a token.
    A well-formed request whose sign-in does not verify is a 401 naming the reason; a session
    sign-in without the sign-in page's CSRF token, or from another origin, is a 403."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = THROTTLES
    throttle_scope = "signin"

    class LoginInput(serializers.Serializer):
        message = TextField(max_length=4000, help_text="The EIP-4361 message the wallet signed.")
        signature = TextField(
            pattern=HEX_SIGNATURE,
            refusal=SIGNATURE_REFUSAL,
            help_text="personal_sign of the message.",
        )
        session = JsonBooleanField(default=False)

    @extend_schema(
        request=LoginInput,
        responses=responses(
            {
                200: inline_serializer(
                    "LoginResult",
                    {
                        "did": serializers.CharField(),
                        "address": serializers.CharField(),
                        "token": serializers.CharField(required=False),
                    },
                )
            },
            *COMMON,
            *JSON_BODY,
            401,
            403,
            429,
        ),
    )
    def post(self, request):
        data = self.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["session"]:
            session_sign_in_allowed(request)
        user = services.identity_sign_in(
            message=data.validated_data["message"], signature=data.validated_data["signature"]
        )
        body = {"did": selectors.identity_did(user), "address": user.address}
        if data.validated_data["session"]:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        else:
            body["token"] = services.api_token_for(user)
        return Response(body)


def session_sign_in_allowed(request) -> None:
    """A session sign-in comes from this site's own page: from the public origin, with the CSRF
    token of the sign-in page. A form or script on another site signs nobody in (login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != settings.PUBLIC_ORIGIN:
        raise ApplicationError(
            f"A browser sign-in must come from {settings.PUBLIC_ORIGIN}, not from {origin[:80]}.",
            {"code": "wrong_origin"},
            status_code=403,
        )
    check = CSRFCheck(lambda _: None)
    check.process_request(request._request)  # reads the CSRF cookie
    reason = check.process_view(request._request, None, (), {})
    if reason is not None:
        raise ApplicationError(
            "The sign-in page's security token is missing or stale: reload the page and sign in "
            "again.",
            {"code": "csrf_failed"},
            status_code=403,
        )


class LogoutApi(APIView):
    @extend_schema(request=None, responses=responses({200: MessageOut}, *SIGNED_IN))
    def post(self, request):
        if isinstance(request.successful_authenticator, TokenAuthentication):
            services.api_token_revoke(request.user)
        logout(request._request)
        return Response({"message": "Signed out."})


class MeApi(APIView):
    class ProfileInput(serializers.Serializer):
        display_name = TextField(max_length=80, allow_blank=True, required=False)

    @extend_schema(responses=responses({200: ProfileOut}, *SIGNED_IN))
    def get(self, request):
        return Response(selectors.identity_profile(request.user))

    @extend_schema(
        request=ProfileInput, responses=responses({200: ProfileOut}, *SIGNED_IN, *JSON_BODY)
    )
    def patch(self, request):
        data = self.ProfileInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user
        if "display_name" in data.validated_data:  # a PATCH changes what it names
            user = services.profile_update(user=user, **data.validated_data)
        return Response(selectors.identity_profile(user))


class ServiceAttributeInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["service"])
    value = TextField(
        max_length=500,
        pattern=services.SERVICE_ENDPOINT_PATTERN,
        refusal={
            "*": ("The service endpoint must be an http(s) URL.", "bad_endpoint"),
            "max_length": ("The service endpoint is longer than 500 characters.", "bad_endpoint"),
        },
        help_text="An http(s) URL where the identity offers a service.",
    )


class EncryptionKeyAttributeInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["encryption_key"])
    value = TextField(
        pattern=services.ENCRYPTION_KEY_PATTERN,
        refusal=(
            "The encryption key must be an X25519 public key: 32 bytes in base64.",
            "bad_key",
        ),
        help_text="An X25519 public key: 32 bytes in base64 (44 characters).",
    )


DID_ATTRIBUTE_INPUTS = {
    "service": ServiceAttributeInput,
    "encryption_key": EncryptionKeyAttributeInput,
}


class DidAttributeRequestApi(APIView):
    """POST {"kind": "service"|"encryption_key", "value": ...} -> the setAttribute transaction
    ({"chain_id", "to", "data", "value_wei"}) for the user to send from their own wallet."""

    class KindInput(serializers.Serializer):
        kind = serializers.ChoiceField(choices=list(DID_ATTRIBUTE_INPUTS))

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="DidAttribute",
            serializers=DID_ATTRIBUTE_INPUTS,
            resource_type_field_name="kind",
        ),
        responses=responses({200: TxRequestOut}, *SIGNED_IN, *JSON_BODY, 503),
    )
    def post(self, request):
        chosen = self.KindInput(data=request.data)
        chosen.is_valid(raise_exception=True)
        form = DID_ATTRIBUTE_INPUTS[chosen.validated_data["kind"]](data=request.data)
        form.is_valid(raise_exception=True)
        tx = services.did_attribute_request(user=request.user, **form.validated_data)
        return Response(tx.as_json())


DID_PATTERN = r"\Adid:ethr:(0x[0-9a-fA-F]+:)?0x[0-9a-fA-F]{40}\Z"


class DidDocumentApi(APIView):
    permission_classes = [permissions.AllowAny]
    throttle_classes = THROTTLES
    throttle_scope = "did"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "did",
                {"type": "string", "pattern": DID_PATTERN.replace(r"\A", "^").replace(r"\Z", "$")},
                OpenApiParameter.PATH,
                description="did:ethr:<chain id in hex>:<address>; another chain's is a 404.",
            )
        ],
        responses=responses(
            {(200, "application/did+ld+json"): OpenApiTypes.OBJECT}, *PUBLIC, 400, 429, 503
        ),
    )
    def get(self, request, did: str):
        if not re.match(DID_PATTERN, did):
            raise ApplicationError(
                f"{did[:80]!r} is not a did:ethr identifier (did:ethr:<chain id>:<address>).",
                {"code": "invalid_did"},
            )
        document, _ = selectors.did_document(did)
        return JsonResponse(document, content_type="application/did+ld+json")
