"""Listed datasets for training tests, listed in-process through the real pipeline (IPFS pinning,
EIP-712 signature by the owner's dev key, relayed registration on anvil)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from eth_account import Account
from rest_framework.test import APIClient
from sklearn.datasets import load_breast_cancer, load_diabetes
from web3 import Web3

from chain.client import get_web3
from chain.wrappers import DatasetRegistry
from datasets.models import Dataset
from datasets.selectors import listing_terms
from datasets.services import (
    dataset_create,
    dataset_process,
    dataset_register,
    dataset_signature_submit,
)
from marketplace.models import User
from tests.datasets.factories import DEV_KEYS, user_for
from training.models import TrainingRun

BUYER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # anvil dev account 4 (unlocked)


def list_frame(
    frame: pd.DataFrame, *, account: int, title: str, price_wei: int, tmp_path
) -> Dataset:
    path = tmp_path / f"{title.replace(' ', '-')}.csv"
    frame.to_csv(path, index=False)
    return list_file(path, account=account, title=title, price_wei=price_wei)


def list_file(path, *, account: int, title: str, price_wei: int, **terms) -> Dataset:
    """List a file in-process through the real pipeline, signed by the dev account's key;
    `terms` are the owner's further listing terms (e.g. dp_epsilon_max, feature_opt_in)."""
    owner = user_for(account)
    dataset = dataset_create(
        owner=owner, upload=path, original_filename=path.name, title=title,
        license="CC-BY-4.0", price_wei=price_wei, enqueue=False, **terms,
    )  # fmt: skip
    dataset_process(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE, dataset.status_message
    typed = DatasetRegistry.deployed().listing_typed_data(listing_terms(dataset))
    signature = Account.sign_typed_data(DEV_KEYS[account], full_message=typed).signature
    dataset_signature_submit(
        dataset_id=dataset.pk, user=owner, signature="0x" + signature.hex(), enqueue=False
    )
    dataset_register(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.LISTED, dataset.status_message
    return dataset


def shards(frame: pd.DataFrame, count: int, seed: int = 0) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    return [frame.iloc[part].reset_index(drop=True) for part in np.array_split(order, count)]


def cancer_like(rows: int, seed: int) -> pd.DataFrame:
    """Rows of the breast-cancer set's columns and classes, none of them its rows: drawn from
    Gaussians fitted to each class (for a further owner's data beside `cancer_datasets`, which
    list every real row; another owner's copy of those would be refused)."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    rng = np.random.default_rng(seed)
    features = [c for c in frame.columns if c != "target"]
    labels = rng.choice(frame["target"].to_numpy(), rows)
    drawn = np.empty((rows, len(features)))
    for label in np.unique(labels):
        part = frame.loc[frame["target"] == label, features].to_numpy()
        where = labels == label
        drawn[where] = rng.multivariate_normal(part.mean(axis=0), np.cov(part.T), where.sum())
    out = pd.DataFrame(drawn.round(6), columns=features)
    out["target"] = labels
    return out


@pytest.fixture
def cancer_datasets(contracts, ipfs_node, tmp_path):
    """Two listed shards of the breast-cancer set, owned by dev accounts 1 and 2; the second
    with its labels shuffled (noisy)."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    clean, noisy = shards(frame, 2, seed=5)
    noisy["target"] = np.random.default_rng(1).permutation(noisy["target"].to_numpy())
    return [
        list_frame(clean, account=1, title="Cancer clean", price_wei=2 * 10**16, tmp_path=tmp_path),
        list_frame(noisy, account=2, title="Cancer noisy", price_wei=2 * 10**16, tmp_path=tmp_path),
    ]


@pytest.fixture
def diabetes_dataset(contracts, ipfs_node, tmp_path):
    frame = load_diabetes(as_frame=True).frame
    return list_frame(frame, account=3, title="Diabetes", price_wei=10**16, tmp_path=tmp_path)


@pytest.fixture
def buyer(db):
    user, _ = User.objects.get_or_create(address=BUYER, defaults={"username": BUYER})
    return user


@pytest.fixture
def buyer_api(buyer):
    client = APIClient()
    client.force_authenticate(buyer)
    return client


def wallet_pay(escrow: dict, sender: str = BUYER) -> str:
    """The buyer's wallet sends the ready-made `fund` call (anvil signs for its dev accounts)."""
    w3 = get_web3()
    tx_hash = w3.eth.send_transaction(
        {
            "from": sender,
            "to": Web3.to_checksum_address(escrow["address"]),
            "data": escrow["data"],
            "value": int(escrow["value_wei"]),
        }
    )
    w3.eth.wait_for_transaction_receipt(tx_hash)
    return tx_hash.to_0x_hex()


def pay_and_index(escrow: dict) -> str:
    """Pay, then run one indexer tick on the worker (what Celery beat does every few seconds)."""
    from chain.tasks import index_chain

    tx_hash = wallet_pay(escrow)
    index_chain.delay()
    return tx_hash


def wait_for_run(run_id: int, *statuses: str, timeout: float = 120) -> TrainingRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = TrainingRun.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        time.sleep(0.25)
    raise AssertionError(
        f"run {run_id} is still {run.status} ({run.stage}, {run.progress} %): {run.error}"
    )


def commission_and_pay(buyer_api, datasets, **overrides) -> TrainingRun:
    """Commission a run and pay it; the funding is recorded in this process (no worker)."""
    from training.services import training_run_funding_hint

    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in datasets], "target_column": "target",
         "model": "random_forest", "seed": 2, **overrides},
        format="json",
    ).json()  # fmt: skip
    run = TrainingRun.objects.get(pk=body["id"])
    training_run_funding_hint(run=run, tx_hash=wallet_pay(body["escrow"]))
    run.refresh_from_db()
    return run


def run_to_completion(buyer_api, datasets, **terms) -> TrainingRun:
    """Commission a run on `datasets`, pay it from the buyer's wallet, point the marketplace at
    the payment (as the run page does) and wait for the worker to complete it."""
    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in datasets], "target_column": "target", **terms},
        format="json",
    ).json()
    tx_hash = wallet_pay(body["escrow"])
    buyer_api.post(f"/api/training-runs/{body['id']}/funding", {"tx_hash": tx_hash}, format="json")
    run = wait_for_run(body["id"], "completed", "failed")
    assert run.status == "completed", run.error
    return run


def execute_attested(run_id: int, *, task_id: str = "") -> TrainingRun:
    """Play the worker and its validators in this process: train and package, have each assigned
    validator attest the report (`attest_in_process`), then settle on the quorum."""
    from tests.conftest import attest_in_process
    from training.services import training_run_execute, training_run_settle

    training_run_execute(run_id=run_id, task_id=task_id)
    run = TrainingRun.objects.get(pk=run_id)
    if run.status == TrainingRun.Status.SETTLING:
        attest_in_process(run)
        training_run_settle(run_id=run_id)
        run.refresh_from_db()
    return run
