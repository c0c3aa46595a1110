"""Sign-In with Ethereum over the API: the success path and every way a sign-in is refused."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketplace.models import LoginNonce, User
from tests.marketplace.siwe_helpers import ALICE, MALLORY, MALLORY_KEY, sign, siwe_text

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
    # A sign-in issues a new token; the one before it stops working.
    assert token_one != token_two
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_one}")
    assert api.get("/api/me").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_two}")
    assert api.get("/api/me").status_code == 200


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


# --- attacks on the sign-in -----------------------------------------------------------------


def test_a_session_sign_in_without_the_pages_csrf_token_signs_nobody_in():
    """Login CSRF: another site's form posting the attacker's signed message for the victim."""
    browser = APIClient(enforce_csrf_checks=True)
    text = siwe_text(nonce=new_nonce(browser), address=MALLORY)

    response = login(browser, text, sign(text, MALLORY_KEY), session=True)

    assert response.status_code == 403
    assert response.json()["extra"]["code"] == "csrf_failed"
    assert "sessionid" not in response.cookies
    assert browser.get("/api/me").status_code in (401, 403)
    assert not User.objects.filter(address=MALLORY).exists()


def session_sign_in_from(origin: str):
    """The sign-in page's flow: its CSRF cookie sent back as the header, from `origin`."""
    browser = APIClient(enforce_csrf_checks=True)
    token = browser.get("/signin/").cookies["csrftoken"].value
    text = siwe_text(nonce=new_nonce(browser))
    response = browser.post(
        "/api/auth/login",
        {"message": text, "signature": sign(text), "session": True},
        format="json",
        HTTP_X_CSRFTOKEN=token,
        HTTP_ORIGIN=origin,
    )
    return browser, response


def test_a_session_sign_in_from_another_origin_is_refused_even_with_a_token():
    _, response = session_sign_in_from("http://127.0.0.2:8000")

    assert response.status_code == 403
    assert response.json()["extra"]["code"] == "wrong_origin"


def test_the_sign_in_page_session_sign_in_works_with_its_csrf_token():
    browser, response = session_sign_in_from("http://testserver")

    assert response.status_code == 200
    assert browser.get("/api/me").json()["address"] == ALICE


def test_a_message_for_the_requests_own_host_is_refused_when_it_is_not_the_public_origin(api):
    """The domain is compared with the configured public origin, not with the Host header."""
    text = siwe_text(nonce=new_nonce(api), domain="localhost", uri="http://localhost")

    response = api.post(
        "/api/auth/login",
        {"message": text, "signature": sign(text)},
        format="json",
        HTTP_HOST="localhost",
    )

    assert response.status_code == 401
    assert response.json()["extra"]["code"] == "wrong_domain"


def test_a_uri_that_only_starts_like_the_public_origin_is_refused(api):
    text = siwe_text(nonce=new_nonce(api), uri="http://testserver.attacker.example/")

    response = login(api, text, sign(text))

    assert response.status_code == 401
    assert response.json()["extra"]["code"] == "wrong_uri"


def test_an_api_token_expires(api, settings):
    text = siwe_text(nonce=new_nonce(api))
    token = login(api, text, sign(text)).json()["token"]
    Token.objects.filter(key=token).update(
        created=timezone.now() - timedelta(days=settings.API_TOKEN_TTL_DAYS, seconds=1)
    )
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = api.get("/api/me")

    assert response.status_code == 401
    assert "expired" in response.json()["message"]
    assert not Token.objects.filter(key=token).exists()


def test_sign_out_revokes_the_token(api):
    text = siwe_text(nonce=new_nonce(api))
    token = login(api, text, sign(text)).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api.post("/api/auth/logout").status_code == 200

    assert api.get("/api/me").status_code == 401
