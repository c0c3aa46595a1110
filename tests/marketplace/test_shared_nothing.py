"""Hosts that share nothing but the services: the web process (the live server) and two Celery
workers, each with a data folder and a working directory of its own, share only PostgreSQL,
Redis, the IPFS node and the chain. Uploads reach whichever worker takes them through the IPFS
node; listings made concurrently all succeed, and runs trained concurrently each settle once."""

from __future__ import annotations

import os
import threading

import pytest
import requests
from django.conf import settings
from eth_account import Account
from rest_framework.authtoken.models import Token

from chain.wrappers import DatasetRegistry, TrainingEscrow
from datasets.models import Dataset
from datasets.selectors import listing_terms
from marketplace.ipfs import pinned_cids
from marketplace.services import user_for_address
from tests.conftest import start_celery_worker, stop_celery_worker
from tests.datasets.conftest import wait_for_status
from tests.datasets.factories import DEV_KEYS, user_for
from tests.training.conftest import BUYER, cancer_like, wait_for_run, wallet_pay

pytestmark = pytest.mark.django_db(transaction=True)

# Four uploads by three data owners (anvil dev accounts; the buyer is account 4).
UPLOADS = ((1, 101), (2, 102), (3, 103), (1, 104))  # (owner's account, rows' seed)


@pytest.fixture
def second_host(celery_worker, tmp_path):
    """A second worker on the same queue, as on another machine: its own data folder and
    working directory (the session's worker has its own too, and the web process its own)."""
    host_dir = tmp_path / "second-host"
    host_dir.mkdir()
    process = start_celery_worker(
        hostname=f"second-host-{os.getpid()}@localhost",
        queue=settings.CELERY_TASK_DEFAULT_QUEUE,
        log_path=host_dir / "worker.log",
        host_dir=host_dir,
    )
    yield host_dir
    stop_celery_worker(process)


def web_session(live_server, user) -> requests.Session:
    session = requests.Session()
    token, _ = Token.objects.get_or_create(user=user)
    session.headers["Authorization"] = f"Token {token.key}"
    session.base_url = live_server.url
    return session


def upload(session: requests.Session, seed: int, results: dict) -> None:
    frame = cancer_like(rows=160, seed=seed)
    response = session.post(
        f"{session.base_url}/api/datasets",
        data={"title": f"Measurements {seed}", "license": "CC-BY-4.0", "price_wei": str(10**16)},
        files={"file": (f"part-{seed}.csv", frame.to_csv(index=False).encode(), "text/csv")},
        timeout=60,
    )
    results[seed] = response


def sign(session: requests.Session, account: int, dataset: Dataset) -> None:
    typed = DatasetRegistry.deployed().listing_typed_data(listing_terms(dataset))
    signature = Account.sign_typed_data(DEV_KEYS[account], full_message=typed).signature
    response = session.post(
        f"{session.base_url}/api/datasets/{dataset.pk}/signature",
        json={"signature": "0x" + signature.hex()},
        timeout=60,
    )
    assert response.status_code in (200, 202), response.text


def tasks_done(log_text: str, name: str) -> int:
    lines = log_text.splitlines()
    return sum(1 for line in lines if f"Task {name}[" in line and "succeeded" in line)


def test_listings_and_runs_on_two_workers_that_share_no_disk(
    live_server, contracts, celery_worker, second_host, tmp_path_factory
):
    sessions = {a: web_session(live_server, user_for(a)) for a in {a for a, _ in UPLOADS}}
    pins_before = pinned_cids()

    # Four uploads at once; whichever worker takes an upload fetches it from IPFS.
    responses: dict[int, requests.Response] = {}
    threads = [
        threading.Thread(target=upload, args=(sessions[a], seed, responses)) for a, seed in UPLOADS
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.status_code == 201 for r in responses.values()), [
        r.text for r in responses.values()
    ]
    ids = {seed: (a, responses[seed].json()["id"]) for a, seed in UPLOADS}
    staged = {Dataset.objects.get(pk=i).upload_cid for _, i in ids.values()}
    assert staged <= pinned_cids() and "" not in staged

    for account, dataset_id in ids.values():
        dataset = wait_for_status(dataset_id, Dataset.Status.AWAITING_SIGNATURE, timeout=120)
        sign(sessions[account], account, dataset)
    listed = [wait_for_status(i, Dataset.Status.LISTED, timeout=120) for _, i in ids.values()]
    assert all(d.upload_cid == "" for d in listed)
    assert not staged & pinned_cids()  # each staged upload unpinned once its listing was pinned
    assert {d.cid for d in listed} | {d.metadata_cid for d in listed} <= pinned_cids()

    # Both hosts did listing work, each from its own folders.
    first_host = next(tmp_path_factory.getbasetemp().glob("worker-host*"))
    logs = [(host / "worker.log").read_text() for host in (first_host, second_host)]
    assert all(tasks_done(text, "datasets.process") for text in logs), logs

    # Two runs commissioned and paid at once, trained and attested concurrently.
    buyer = web_session(live_server, user_for_address(address=BUYER))
    runs = []
    for pair in ((listed[0], listed[1]), (listed[2], listed[3])):
        body = buyer.post(
            f"{buyer.base_url}/api/training-runs",
            json={"dataset_ids": [d.pk for d in pair], "target_column": "target",
                  "model": "logistic_regression", "seed": 3},
            timeout=60,
        ).json()  # fmt: skip
        runs.append(body)
    for body in runs:
        tx_hash = wallet_pay(body["escrow"])
        response = buyer.post(
            f"{buyer.base_url}/api/training-runs/{body['id']}/funding",
            json={"tx_hash": tx_hash},
            timeout=60,
        )
        assert response.status_code in (200, 202), response.text
    finished = [wait_for_run(body["id"], "completed", "failed", timeout=240) for body in runs]
    assert [run.status for run in finished] == ["completed", "completed"], [
        run.error for run in finished
    ]

    escrow = TrainingEscrow.deployed()
    for run in finished:
        events = escrow.job_events(bytes.fromhex(run.job_id), buyer=BUYER)
        assert [e.name for e in events].count("JobSettled") == 1
    # Nothing of the uploads is left on the node beyond the listings' own pins and the models.
    assert not staged & pinned_cids()
    assert pins_before <= pinned_cids()
