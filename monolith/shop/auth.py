"""Login, logout and whoami: the shared auth/session tables every context leans on (T9).

``GET /api/whoami/`` is a cross-part contract: the router calls it with the client's
``sessionid`` cookie or ``Authorization: Token ...`` to learn who is asking, and signs
that identity for the extracted services. 200 ``{"id", "username", "is_staff"}`` or 401.
"""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class WhoAmISerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    is_staff = serializers.BooleanField()


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


def _identity(user) -> dict:  # type: ignore[no-untyped-def]
    return {"id": user.id, "username": user.username, "is_staff": user.is_staff}


class WhoAmIView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=WhoAmISerializer)
    def get(self, request: Request) -> Response:
        return Response(_identity(request.user))


class LoginView(APIView):
    """``POST /api/auth/login/`` → session cookie + API token for the same user."""

    authentication_classes: list = []  # no CSRF check before anyone is logged in
    permission_classes: list = []

    @extend_schema(
        request=LoginSerializer,
        responses=inline_serializer(
            "LoginResponse",
            {"id": serializers.IntegerField(), "username": serializers.CharField(),
             "is_staff": serializers.BooleanField(), "token": serializers.CharField()},
        ),
    )
    def post(self, request: Request) -> Response:
        form = LoginSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=form.validated_data["username"],
            password=form.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise serializers.ValidationError(
                {"non_field_errors": ["Invalid username or password."]}
            )
        login(request._request, user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({**_identity(user), "token": token.key})


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)
