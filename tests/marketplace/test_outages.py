"""One answer for a node outage: with the chain, IPFS or Redis down, every API that needs it
answers 503 naming the part, and a page shows the readable 503 page."""

from __future__ import annotations

import hashlib
import secrets
import socket
import time

import pytest
from rest_framework.test import APIClient

from chain.client import ChainUnavailable, get_web3, web3_for
from datasets.models import Dataset
from marketplace.celery import app as celery_app
from marketplace.ipfs import pin_file
from tests.datasets.factories import csv_upload, listed_dataset, listing_fields, user_for
from training.models import TrainingRun

MESSAGES = {
    "chain": "The blockchain node is not answering, so this cannot be done right now. "
    "Try again shortly.",
    "ipfs": "The IPFS node is not answering, so this cannot be done right now. Try again shortly.",
    "redis": "The task queue (Redis) is not answering, so this cannot be done right now. "
    "Try again shortly.",
}


def outage(part: str) -> dict:
    return {"message": MESSAGES[part], "extra": {"code": "node_unavailable", "part": part}}


@pytest.fixture
def closed_url() -> str:
    """An http URL on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def chain_down(settings, closed_url):
    settings.CHAIN_RPC_URL = closed_url


@pytest.fixture
def ipfs_down(settings, closed_url):
    settings.IPFS_API_URL = closed_url


@pytest.fixture
def redis_down(settings, closed_url):
    """The broker URL on a closed port, for the settings and the Celery app that read it."""
    url = closed_url.replace("http://", "redis://") + "/0"
    previous = celery_app.conf.broker_url, celery_app.conf.broker_write_url
    settings.CELERY_BROKER_URL = url

    def use(broker_url: str, write_url: str) -> None:
        # The app copied the broker URL when it was configured, and pools its connections.
        celery_app.conf.broker_url, celery_app.conf.broker_write_url = broker_url, write_url
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    use(url, url)
    yield
    use(*previous)


@pytest.fixture
def user(db):
    return user_for(1)


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def run_of(buyer, dataset: Dataset, **fields) -> TrainingRun:
    run = TrainingRun.objects.create(
        buyer=buyer, job_id=secrets.token_hex(32), target_column="y", task="regression",
        model="ridge", price_wei=10**16, compute_fee_wei=10**15, **fields,
    )  # fmt: skip
    run.inputs.create(
        dataset=dataset, position=0, listing_id=1, owner_address=dataset.owner.address,
        price_wei=dataset.price_wei,
    )  # fmt: skip
    return run


def numbers_dataset(owner, **fields) -> Dataset:
    return listed_dataset(
        owner=owner,
        columns=[
            {"name": "x", "type": "float", "distinct": 100},
            {"name": "y", "type": "float", "distinct": 100},
        ],
        listing_id=1,
        **fields,
    )


# --- the chain ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_chain_read_that_fails_mid_call_is_chain_unavailable(anvil):
    w3 = get_web3()  # the node answered the chain id check
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        w3.provider.endpoint_uri = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(ChainUnavailable):
        w3.eth.get_block("latest")


def test_a_provider_built_for_requests_fails_as_chain_unavailable(closed_url):
    with pytest.raises(ChainUnavailable) as raised:
        web3_for(closed_url, timeout=1).eth.get_block_number()
    assert raised.value.part == "chain"


def test_commissioning_a_run_with_the_chain_down_is_503(api, user, chain_down):
    dataset = numbers_dataset(user_for(2))

    response = api.post(
        "/api/training-runs",
        {"dataset_ids": [dataset.pk], "target_column": "y", "model": "ridge", "task": "regression"},
        format="json",
    )

    assert response.status_code == 503
    assert response.json() == outage("chain")
    assert not TrainingRun.objects.exists()


def test_a_funding_hint_with_the_chain_down_is_503(api, user, chain_down):
    run = run_of(user, numbers_dataset(user_for(2)))

    response = api.post(
        f"/api/training-runs/{run.pk}/funding", {"tx_hash": "0x" + "ab" * 32}, format="json"
    )

    assert response.status_code == 503
    assert response.json() == outage("chain")


def test_earnings_with_the_chain_down_are_503(api, chain_down):
    response = api.get("/api/earnings")

    assert response.status_code == 503
    assert response.json() == outage("chain")


def test_a_withdrawal_hint_with_the_chain_down_is_503(api, chain_down):
    response = api.post("/api/earnings/withdrawals", {"tx_hash": "0x" + "cd" * 32}, format="json")

    assert response.status_code == 503
    assert response.json() == outage("chain")


def awaiting_signature(owner) -> Dataset:
    return listed_dataset(
        owner=owner, status=Dataset.Status.AWAITING_SIGNATURE, listing_id=None,
        cid="b" + "a" * 58, content_sha256="11" * 32, metadata_sha256="22" * 32,
        sign_deadline=int(time.time()) + 86400,
    )  # fmt: skip


def test_submitting_a_listing_signature_with_the_chain_down_is_503(api, user, chain_down):
    dataset = awaiting_signature(user)

    response = api.post(
        f"/api/datasets/{dataset.pk}/signature", {"signature": "0x" + "1b" * 65}, format="json"
    )

    assert response.status_code == 503
    assert response.json() == outage("chain")
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE


def test_the_owner_s_signing_request_with_the_chain_down_is_503(api, user, chain_down):
    dataset = awaiting_signature(user)

    response = api.get(f"/api/datasets/{dataset.pk}")

    assert response.status_code == 503
    assert response.json() == outage("chain")


def test_resolving_a_did_with_the_chain_down_is_503_not_a_stale_document(api, user, chain_down):
    response = APIClient().get(f"/api/dids/did:ethr:0x7a69:{user.address}")

    assert response.status_code == 503
    assert response.json() == outage("chain")


def test_a_chain_without_our_contracts_is_503_misconfigured(api, user, anvil):
    response = api.get(f"/api/dids/did:ethr:0x7a69:{user.address}")  # nothing deployed

    assert response.status_code == 503
    assert response.json()["extra"] == {"code": "node_misconfigured", "part": "chain"}


def test_verifying_a_listing_with_the_chain_down_is_503_not_a_failed_check(
    api, user, ipfs_node, tmp_path, settings, closed_url
):
    path = tmp_path / "sealed.bin"
    path.write_bytes(b"sealed bytes of a listing")
    dataset = listed_dataset(
        owner=user, listing_id=1, cid=pin_file(path),
        content_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), metadata_sha256="22" * 32,
    )  # fmt: skip
    settings.CHAIN_RPC_URL = closed_url

    response = api.post(f"/api/datasets/{dataset.pk}/verify")

    assert response.status_code == 503
    assert response.json() == outage("chain")


# --- IPFS ----------------------------------------------------------------------------------------


def test_verifying_a_listing_with_ipfs_down_is_503(api, user, ipfs_down):
    dataset = listed_dataset(
        owner=user, listing_id=1, cid="b" + "a" * 58, content_sha256="11" * 32,
        metadata_sha256="22" * 32,
    )  # fmt: skip

    response = api.post(f"/api/datasets/{dataset.pk}/verify")

    assert response.status_code == 503
    assert response.json() == outage("ipfs")


def test_downloading_a_model_with_ipfs_down_is_503(api, user, ipfs_down):
    run = run_of(
        user, numbers_dataset(user_for(2)), status=TrainingRun.Status.COMPLETED,
        model_cid="b" + "a" * 58, model_sha256="33" * 32,
    )  # fmt: skip

    response = api.get(f"/api/training-runs/{run.pk}/model")

    assert response.status_code == 503
    assert response.json() == outage("ipfs")


# --- Redis ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_listing_a_dataset_with_redis_down_is_503(redis_down):
    client = APIClient()
    client.force_authenticate(user_for(1))

    response = client.post(
        "/api/datasets",
        {**listing_fields(), "file": csv_upload(b"x,y\n1,2\n3,4\n")},
        format="multipart",
    )

    assert response.status_code == 503
    assert response.json() == outage("redis")


@pytest.mark.django_db(transaction=True)
def test_the_upload_page_with_redis_down_shows_the_readable_503_page(client, redis_down):
    client.force_login(user_for(1))
    fields = {**listing_fields(), "price_eth": "0.02"}  # the form asks for ETH, the API for wei

    response = client.post("/datasets/new/", {**fields, "file": csv_upload(b"x,y\n1,2\n3,4\n")})

    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Temporarily unavailable" in page
    assert MESSAGES["redis"] in page
    assert 'data-part="redis"' in page
