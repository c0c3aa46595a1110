"""The web process signs nothing: with no operator or admin key available to it, its request
paths that start chain work (a listing's signature, a commission, a payment) still answer, and
the workers, which hold the keys, relay, train and settle."""

import time

import pytest
from eth_account import Account
from rest_framework.test import APIClient

from chain.sender import signing_key
from chain.wrappers import DatasetRegistry
from datasets.models import Dataset
from datasets.selectors import listing_terms
from datasets.services import dataset_create, dataset_process
from marketplace.config import SettingError
from tests.datasets.factories import DEV_KEYS, user_for
from tests.training.conftest import cancer_like, wait_for_run, wallet_pay

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web_without_keys(monkeypatch, settings):
    """This process as a web process is deployed: no signing key in its environment, and no
    dev-chain default to fall back to."""
    for name in settings.SIGNING_KEY_SETTINGS.values():
        monkeypatch.delenv(name, raising=False)
    settings.SIGNING_KEY_DEV_ACCOUNTS = {}
    for role in ("operator", "admin"):
        with pytest.raises(SettingError, match="is not set"):
            signing_key(role)


def awaiting_signature(tmp_path) -> Dataset:
    path = tmp_path / "cancer.csv"
    cancer_like(569, seed=3).to_csv(path, index=False)  # not `cancer_datasets`' rows: its own
    dataset = dataset_create(
        owner=user_for(3), upload=path, original_filename=path.name, title="Cancer, signed",
        license="CC-BY-4.0", price_wei=10**16, enqueue=False,
    )  # fmt: skip
    dataset_process(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE, dataset.status_message
    return dataset


def wait_for_listing(dataset_id: int, timeout: float = 60) -> Dataset:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(pk=dataset_id)
        if dataset.status in (Dataset.Status.LISTED, Dataset.Status.FAILED):
            return dataset
        time.sleep(0.25)
    raise AssertionError(f"dataset {dataset_id} is still {dataset.status}")


def test_the_request_paths_that_queue_chain_work_need_no_key(
    cancer_datasets, buyer_api, celery_worker, web_without_keys, tmp_path
):
    dataset = awaiting_signature(tmp_path)
    owner = APIClient()
    owner.force_authenticate(dataset.owner)
    typed = DatasetRegistry.deployed().listing_typed_data(listing_terms(dataset))
    signature = Account.sign_typed_data(DEV_KEYS[3], full_message=typed).signature

    signed = owner.post(
        f"/api/datasets/{dataset.pk}/signature",
        {"signature": "0x" + signature.hex()},
        format="json",
    )

    assert signed.status_code == 202, signed.json()
    listed = wait_for_listing(dataset.pk)  # the worker relays it with the operator key
    assert listed.status == Dataset.Status.LISTED, listed.status_message

    commissioned = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in cancer_datasets], "target_column": "target",
         "model": "logistic_regression", "seed": 6},
        format="json",
    )  # fmt: skip
    assert commissioned.status_code == 201, commissioned.json()
    body = commissioned.json()
    paid = wallet_pay(body["escrow"])
    hint = buyer_api.post(
        f"/api/training-runs/{body['id']}/funding", {"tx_hash": paid}, format="json"
    )
    assert hint.status_code == 200, hint.json()
    assert buyer_api.get(f"/api/training-runs/{body['id']}").status_code == 200
    run = wait_for_run(body["id"], "completed", "failed")  # the worker settles it
    assert run.status == "completed", run.error
    contributor = APIClient()
    contributor.force_authenticate(cancer_datasets[0].owner)
    earnings = contributor.get("/api/earnings")
    assert earnings.status_code == 200
    assert earnings.json()["withdraw"] is not None
