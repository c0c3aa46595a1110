"""Sign-In with Ethereum over the API: the success path and every way a sign-in is refused."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketplace.models import LoginNonce, User
from tests.marketplace.siwe_helpers import ALICE, MALLORY_KEY, sign, siwe_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def new_nonce(api) -> str:
    response = api.get("/api/auth/nonce")
    assert response.status_code == 200
    return response.json()["nonce"]


def login(api, text: str, signature: str, **extra):
    return api.post(
        "/api/auth/login", {"message": text, "signature": signature, **extra}, format="json"
    )


def test_nonces_are_fresh_each_time(api):
    assert new_nonce(api) != new_nonce(api)


def test_first_sign_in_creates_the_identity_and_returns_a_token(api):
    text = siwe_text(nonce=new_nonce(api))

    response = login(api, text, sign(text))

    assert response.status_code == 200
    body = response.json()
    assert body["address"] == ALICE
    assert body["did"] == f"did:ethr:0x7a69:{ALICE}"
    assert Token.objects.get(user__address=ALICE).key == body["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    me = api.get("/api/me").json()
    assert me["did"] == body["did"] and me["address"] == ALICE


def test_signing_in_again_finds_the_same_identity(api):
    first = siwe_text(nonce=new_nonce(api))
    second = siwe_text(nonce=new_nonce(api))

    token_one = login(api, first, sign(first)).json()["token"]
    token_two = login(api, second, sign(second)).json()["token"]

    assert User.objects.filter(address=ALICE).count() == 1
    assert token_one == token_two


def test_browser_sign_in_gets_a_session_cookie_not_a_token(api):
    text = siwe_text(nonce=new_nonce(api))

    response = login(api, text, sign(text), session=True)

    assert response.status_code == 200
    assert "token" not in response.json()
    assert "sessionid" in response.cookies
    assert api.get("/api/me").json()["address"] == ALICE


def test_logout_revokes_the_token(api):
    text = siwe_text(nonce=new_nonce(api))
    token = login(api, text, sign(text)).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api.post("/api/auth/logout").status_code == 200

    response = api.get("/api/me")
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid token."


def test_missing_token_is_401_with_a_reason(api):
    response = api.get("/api/me")

    assert response.status_code == 401
    assert response.json()["message"] == "Authentication credentials were not provided."


def test_bad_token_is_401_with_a_reason(api):
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = api.get("/api/me")

    assert response.status_code == 401
    assert response.json()["message"] == "Invalid token."


def _expired_nonce(api) -> str:
    nonce = new_nonce(api)
    LoginNonce.objects.filter(value=nonce).update(created=timezone.now() - timedelta(minutes=11))
    return nonce


BAD_SIGN_INS = {
    "unknown nonce": (lambda api: siwe_text(nonce="a1b2c3d4e5f6a7b8"), None, 401, "unknown_nonce"),
    "expired nonce": (lambda api: siwe_text(nonce=_expired_nonce(api)), None, 401, "nonce_expired"),
    "expired message": (
        lambda api: siwe_text(
            nonce=new_nonce(api),
            issued_at=datetime.now(UTC) - timedelta(minutes=5),
            expiration=datetime.now(UTC) - timedelta(minutes=1),
        ),
        None, 401, "message_expired",
    ),
    "issued long ago": (
        lambda api: siwe_text(
            nonce=new_nonce(api),
            issued_at=datetime.now(UTC) - timedelta(hours=1),
            expiration=datetime.now(UTC) + timedelta(hours=1),
        ),
        None, 401, "message_expired",
    ),
    "another domain": (
        lambda api: siwe_text(
            nonce=new_nonce(api), domain="evil.example", uri="https://evil.example"
        ),
        None, 401, "wrong_domain",
    ),
    "another chain": (
        lambda api: siwe_text(nonce=new_nonce(api), chain_id=1), None, 401, "wrong_chain"
    ),
    "malformed message": (lambda api: "please let me in", None, 401, "message_malformed"),
    "another key": (lambda api: siwe_text(nonce=new_nonce(api)), MALLORY_KEY, 401, "wrong_signer"),
    "malformed signature": (
        lambda api: siwe_text(nonce=new_nonce(api)), "0x1234", 400, "signature_malformed"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_SIGN_INS))
def test_bad_sign_in_is_refused_with_a_reason_and_creates_nothing(api, case):
    make_text, key, http_status, code = BAD_SIGN_INS[case]
    text = make_text(api)
    if key == "0x1234":
        signature = key
    else:
        signature = sign(text, key) if key else sign(text)

    response = login(api, text, signature)

    assert response.status_code == http_status
    assert response.json()["extra"]["code"] == code
    assert response.json()["message"]
    assert not User.objects.exists()
    assert not Token.objects.exists()


def test_replayed_sign_in_is_refused(api):
    text = siwe_text(nonce=new_nonce(api))
    assert login(api, text, sign(text)).status_code == 200

    replay = login(api, text, sign(text))

    assert replay.status_code == 401
    assert replay.json()["extra"]["code"] == "nonce_used"


def test_a_partial_profile_update_changes_only_what_it_names(api):
    text = siwe_text(nonce=new_nonce(api))
    api.credentials(HTTP_AUTHORIZATION=f"Token {login(api, text, sign(text)).json()['token']}")
    api.patch("/api/me", {"display_name": "Alice"}, format="json")

    response = api.patch("/api/me", {}, format="json")

    assert response.status_code == 200
    assert response.json()["display_name"] == "Alice"


def test_missing_fields_are_named(api):
    response = api.post("/api/auth/login", {"message": "x"}, format="json")

    assert response.status_code == 400
    assert "signature" in response.json()["extra"]["fields"]


def test_display_name_can_be_changed(api):
    text = siwe_text(nonce=new_nonce(api))
    api.credentials(HTTP_AUTHORIZATION=f"Token {login(api, text, sign(text)).json()['token']}")

    response = api.patch("/api/me", {"display_name": "  Alice's lab "}, format="json")

    assert response.status_code == 200
    assert response.json()["display_name"] == "Alice's lab"
    assert User.objects.get(address=ALICE).display_name == "Alice's lab"


def test_display_name_too_long_is_refused(api):
    text = siwe_text(nonce=new_nonce(api))
    api.credentials(HTTP_AUTHORIZATION=f"Token {login(api, text, sign(text)).json()['token']}")

    response = api.patch("/api/me", {"display_name": "x" * 81}, format="json")

    assert response.status_code == 400
    assert "display_name" in response.json()["extra"]["fields"]
