"""Identity API: Sign-In with Ethereum, the signed-in identity, DID documents."""

from __future__ import annotations

from django.contrib.auth import login, logout
from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors, services

ProfileOut = inline_serializer(
    "Profile",
    {
        "did": serializers.CharField(),
        "address": serializers.CharField(),
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

    @extend_schema(responses=inline_serializer("Nonce", {"nonce": serializers.CharField()}))
    def get(self, request):
        return Response({"nonce": services.login_nonce_issue()})


class LoginApi(APIView):
    """POST {"message": <EIP-4361 text>, "signature": "0x..."} -> {"token", "did", "address"}.
    With "session": true (the browser), a session cookie is set instead of returning a token."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    class LoginInput(serializers.Serializer):
        message = serializers.CharField(trim_whitespace=False)
        signature = serializers.CharField()
        session = serializers.BooleanField(default=False)

    @extend_schema(
        request=LoginInput,
        responses=inline_serializer(
            "LoginResult",
            {
                "did": serializers.CharField(),
                "address": serializers.CharField(),
                "token": serializers.CharField(required=False),
            },
        ),
    )
    def post(self, request):
        data = self.LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.identity_sign_in(
            message=data.validated_data["message"],
            signature=data.validated_data["signature"],
            domain=request.get_host(),
            origin=f"{request.scheme}://{request.get_host()}",
        )
        body = {"did": selectors.identity_did(user), "address": user.address}
        if data.validated_data["session"]:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        else:
            body["token"] = services.api_token_for(user)
        return Response(body)


class LogoutApi(APIView):
    @extend_schema(request=None, responses=MessageOut)
    def post(self, request):
        if isinstance(request.successful_authenticator, TokenAuthentication):
            services.api_token_revoke(request.user)
        logout(request._request)
        return Response({"message": "Signed out."})


class MeApi(APIView):
    class ProfileInput(serializers.Serializer):
        display_name = serializers.CharField(max_length=80, allow_blank=True)

    @extend_schema(responses=ProfileOut)
    def get(self, request):
        return Response(selectors.identity_profile(request.user))

    @extend_schema(request=ProfileInput, responses=ProfileOut)
    def patch(self, request):
        data = self.ProfileInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.profile_update(user=request.user, **data.validated_data)
        return Response(selectors.identity_profile(user))


class DidAttributeRequestApi(APIView):
    """POST {"kind": "service"|"encryption_key", "value": ...} -> the setAttribute transaction
    ({"chain_id", "to", "data", "value_wei"}) for the user to send from their own wallet."""

    class DidAttributeInput(serializers.Serializer):
        kind = serializers.ChoiceField(choices=["service", "encryption_key"])
        value = serializers.CharField(max_length=600)

    @extend_schema(request=DidAttributeInput, responses=TxRequestOut)
    def post(self, request):
        data = self.DidAttributeInput(data=request.data)
        data.is_valid(raise_exception=True)
        tx = services.did_attribute_request(user=request.user, **data.validated_data)
        return Response(tx.as_json())


class DidDocumentApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={(200, "application/did+ld+json"): OpenApiTypes.OBJECT})
    def get(self, request, did: str):
        document, _ = selectors.did_document(did)
        return JsonResponse(document, content_type="application/did+ld+json")
