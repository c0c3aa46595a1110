"""Limits on expensive anonymous work: a 429 with Retry-After and a sentence, per client IP and
per identity, counted in Redis; what is refused leaves nothing behind."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from datasets.models import Dataset
from marketplace.ipfs import pinned_cids
from tests.datasets.conftest import post_dataset
from tests.datasets.factories import user_for
from tests.marketplace.siwe_helpers import sign, siwe_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    """Low limits, so a test meets them in a few requests."""

    def set_rates(**rates):
        settings.THROTTLE_RATES = {**django_settings.THROTTLE_RATES, **rates}

    return set_rates


def from_ip(ip: str, **extra) -> APIClient:
    return APIClient(REMOTE_ADDR=ip, **extra)


def assert_throttled(response):
    assert response.status_code == 429
    body = response.json()
    assert body["extra"]["code"] == "throttled"
    assert body["message"].startswith("Too many requests: please wait")
    assert int(response["Retry-After"]) >= 1


def test_nonces_are_limited_per_ip_and_a_forged_forwarded_for_does_not_reset_it(rates):
    rates(nonce_per_ip="3/min")
    client = from_ip("203.0.113.7")
    for _ in range(3):
        assert client.get("/api/auth/nonce").status_code == 200

    assert_throttled(client.get("/api/auth/nonce"))
    assert_throttled(client.get("/api/auth/nonce", HTTP_X_FORWARDED_FOR="198.51.100.1"))
    assert from_ip("203.0.113.8").get("/api/auth/nonce").status_code == 200


def test_the_default_limits_let_a_script_sign_in_a_few_dozen_wallets_in_a_minute():
    client = from_ip("203.0.113.9")
    for _ in range(40):
        nonce = client.get("/api/auth/nonce").json()["nonce"]
        text = siwe_text(nonce=nonce)
        response = client.post(
            "/api/auth/login", {"message": text, "signature": sign(text)}, format="json"
        )
        assert response.status_code == 200, response.json()


def test_sign_ins_are_limited_per_ip(rates):
    rates(signin_per_ip="2/min")
    client = from_ip("203.0.113.10")
    for _ in range(2):
        client.post("/api/auth/login", {"message": "x", "signature": "0x1"}, format="json")

    assert_throttled(
        client.post("/api/auth/login", {"message": "x", "signature": "0x1"}, format="json")
    )


def test_did_resolution_is_limited_per_ip(rates, contracts):
    rates(did_per_ip="2/min")
    client = from_ip("203.0.113.11")
    did = "did:ethr:0x7a69:0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    for _ in range(2):
        assert client.get(f"/api/dids/{did}").status_code == 200

    assert_throttled(client.get(f"/api/dids/{did}"))


def test_verification_is_limited_per_identity_across_addresses(rates):
    rates(verify_per_ip="100/min", verify_per_identity="2/hour")
    alice = user_for(1)
    answers = []
    for ip in ("203.0.113.12", "203.0.113.13", "203.0.113.14"):
        client = from_ip(ip)
        client.force_authenticate(alice)
        answers.append(client.post("/api/datasets/999999/verify"))

    assert [a.status_code for a in answers[:2]] == [404, 404]
    assert_throttled(answers[2])


def test_uploads_are_limited_per_identity(rates, tmp_path):
    rates(upload_per_identity="1/hour")
    client = from_ip("203.0.113.15")
    client.force_authenticate(user_for(2))
    client.post("/api/datasets", {"title": "first"}, format="multipart")

    assert_throttled(client.post("/api/datasets", {"title": "second"}, format="multipart"))


def test_the_upload_form_answers_the_same_limit(rates, client):
    rates(upload_per_identity="1/hour")
    client.force_login(user_for(2))
    client.post("/datasets/new/", {"title": "first"})

    response = client.post("/datasets/new/", {"title": "second"})

    assert response.status_code == 429
    assert "Too many requests" in response.content.decode()


def test_the_daily_upload_quota_refuses_with_a_reason_and_keeps_nothing(settings, ipfs_node):
    settings.DATASET_UPLOAD_QUOTA_BYTES_PER_DAY = 1000
    owner = user_for(3)
    api = APIClient()
    api.force_authenticate(owner)
    Dataset.objects.create(owner=owner, title="earlier", license="MIT", price_wei=0, size_bytes=900)
    pinned = pinned_cids()

    response = post_dataset(api, b"a,b\n" + b"1,2\n" * 50, title="Too much today")

    assert response.status_code == 429
    assert response.json()["extra"]["code"] == "upload_quota"
    assert "a day" in response.json()["message"]
    assert int(response["Retry-After"]) > 3600
    assert not Dataset.objects.filter(title="Too much today").exists()
    assert pinned_cids() == pinned  # the upload was refused before it was staged


def test_health_figures_are_reused_for_a_few_seconds(client, settings, celery_worker, contracts):
    from marketplace.devstack import free_port

    assert client.get("/healthz").status_code == 200
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"

    assert client.get("/healthz").status_code == 200  # the figures of a moment ago
    settings.HEALTH_CACHE_SECONDS = 0
    from django.core.cache import cache

    from marketplace.health import HEALTH_CACHE_KEY

    cache.delete(HEALTH_CACHE_KEY)
    assert client.get("/healthz").status_code == 503
