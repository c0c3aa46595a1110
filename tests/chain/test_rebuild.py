"""The database is a cache of the chain: after the whole flow (list, train, settle, withdraw), a
second empty database rebuilt from the chain and IPFS alone answers the API as the first does,
and its listings can be trained on with the same master key."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient
from sklearn.datasets import load_breast_cancer

from chain.client import get_web3
from chain.indexer import chain_index_catch_up
from chain.wrappers import DatasetRegistry, TrainingEscrow
from datasets.services import dataset_create
from marketplace.did import did_for
from marketplace.ipfs import raw_cid_for_sha256, unpin
from marketplace.models import User
from tests.chain.api_answers import answers
from tests.chain.test_indexer import list_with_raw_cid
from tests.conftest import ROOT, _database_url_for_worker
from tests.datasets.factories import user_for
from tests.marketplace.test_did import fresh_identity
from tests.training.conftest import BUYER, list_file, run_to_completion, shards

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def empty_database():
    """A new, migrated PostgreSQL database beside the test database; dropped on leaving."""
    db = connection.settings_dict
    name = f"{db['NAME']}_rebuilt_{secrets.token_hex(4)}"
    server = {
        "host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"],
        "password": db.get("PASSWORD") or None, "dbname": "postgres", "autocommit": True,
    }  # fmt: skip
    with psycopg.connect(**server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database_url_for_worker().rsplit("/", 1)[0] + f"/{name}"
    try:
        manage("migrate", "--no-input", database_url=url)
        yield url
    finally:
        with psycopg.connect(**server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(database_url: str) -> dict:
    """What the worker is given (tests.conftest.start_celery_worker), on another database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "CHAIN_RPC_URL": settings.CHAIN_RPC_URL,
        "IPFS_API_URL": settings.IPFS_API_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
    }


def manage(*args: str, database_url: str, stdin: str = "", module: str = "") -> str:
    command = [sys.executable, "-m", module] if module else [sys.executable, "manage.py", *args]
    done = subprocess.run(
        command, cwd=ROOT, env=_env(database_url), input=stdin, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def flow(contracts, ipfs_node, celery_worker, validator_nodes, tmp_path):
    """The whole flow: three listings (one a new version of another) tagged for this test, a run
    on them trained by the worker, attested by the validators and settled, a withdrawal; then
    the indexer's pass over the chain, as in production."""
    tag = f"rebuild-{secrets.token_hex(4)}"
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    first, second, later = shards(frame, 3, seed=11)
    second["target"] = np.random.default_rng(2).permutation(second["target"].to_numpy())

    def listed(part, *, account: int, title: str, **terms):
        path = tmp_path / f"{title.replace(' ', '-')}.csv"
        part.to_csv(path, index=False)
        return list_file(
            path, account=account, title=title, price_wei=10**16, tags=tag,
            description=f"# {title}\n\nRows of the *breast cancer* set.", **terms,
        )  # fmt: skip

    original = listed(first, account=1, title="Tumours one")
    other = listed(second, account=2, title="Tumours two", dp_epsilon_max=None)
    version = listed(later, account=1, title="Tumours one, more rows", parent_id=original.pk)
    datasets = [original, version, other]
    buyer, _ = User.objects.get_or_create(address=BUYER, defaults={"username": BUYER})
    run = run_to_completion(client_for(buyer), datasets, model="logistic_regression", seed=3)

    owner = original.owner
    body = client_for(owner).get("/api/earnings").json()
    w3 = get_web3()
    tx_hash = w3.eth.send_transaction(
        {"from": owner.address, "to": body["withdraw"]["to"], "data": body["withdraw"]["data"]}
    )
    w3.eth.wait_for_transaction_receipt(tx_hash)
    hint = client_for(owner).post(
        "/api/earnings/withdrawals", {"tx_hash": tx_hash.to_0x_hex()}, format="json"
    )
    assert hint.status_code == 200 and hint.json()["withdrawable_wei"] == "0"
    chain_index_catch_up(w3=w3)
    return {
        "tag": tag, "datasets": datasets, "run": run, "contracts": contracts,
        "withdrawal": tx_hash.to_0x_hex(),
    }  # fmt: skip


def _requests(flow, validators: list[str]) -> list[dict]:
    datasets, run = flow["datasets"], flow["run"]
    owners = sorted({d.owner.address for d in datasets})
    buyer = run.buyer.address
    path = "{run:0x" + run.job_id + "}"
    return [
        {"as": None, "path": f"/api/datasets?tag={flow['tag']}"},
        {"as": None, "path": f"/api/datasets?tag={flow['tag']}&ordering=price_wei"},
        *({"as": None, "path": f"/api/datasets/{d.pk}"} for d in datasets),
        {"as": datasets[0].owner.address, "path": f"/api/datasets/{datasets[0].pk}"},
        {"as": buyer, "path": f"/api/training-runs/{path}"},
        {"as": owners[0], "path": f"/api/training-runs/{path}"},
        {"as": buyer, "path": f"/api/training-runs/{path}/report"},
        {"as": buyer, "path": f"/api/training-runs/{path}/model"},
        *({"as": owner, "path": "/api/earnings"} for owner in owners),
        *(
            {"as": None, "path": f"/api/dids/{did_for(address, settings.CHAIN_ID)}"}
            for address in [*owners, buyer, *validators]
        ),
    ]


def _comparable(
    answer: dict,
    *,
    run_numbers: dict,
    settled_by: list[str],
    dataset_ids: set = frozenset(),
    withdrawals: set = frozenset(),
) -> dict:
    """An answer with what only a database knows put aside. Each difference is justified:

    - a run's number ("id", an earning's "run_id", the model card's title) is the database's
      own, and the chain knows the run by its job id: replaced by the job id;
    - a run's "created" is when the buyer asked for a quote, which only the database recorded
      (a rebuilt run was created when it was paid);
    - the "attestation_deadline" was set when the round opened, which no event records;
    - of the validators' answers, the chain holds those the settlement carried (its calldata and
      JobSettled's validators): one that answered after the quorum, or refused, is only in the
      database that took its answer.
    Everything else (dataset ids, times of listing and settlement, amounts, hashes, reports,
    models, DID documents) is compared as is."""
    body = json.loads(json.dumps(answer))
    found = body.get("json")
    if not isinstance(found, dict):
        return body
    if "job_id" in found and "model_card" in found:
        number = found["id"]
        found["id"] = run_numbers[number]
        found["model_card"] = found["model_card"].replace(
            f"training run {number}", f"training run {run_numbers[number]}"
        )
        found.pop("created")
        found.pop("attestation_deadline")
        found["attestations"] = [a for a in found["attestations"] if a["validator"] in settled_by]
        found["validators"] = [v for v in found["validators"] if v["validator"] in settled_by]
    if "withdrawable_wei" in found:
        # The test database is emptied between tests, the chain keeps every test's credits to
        # these dev accounts: of an earnings answer, what this flow's run credited is compared
        # (the totals add up every test's).
        found["entries"] = [
            {**e, "run_id": run_numbers[e["run_id"]]}
            for e in found["entries"]
            if e["run_id"] in run_numbers
        ]
        found["per_dataset"] = [d for d in found["per_dataset"] if d["dataset_id"] in dataset_ids]
        found["withdrawals"] = [w for w in found["withdrawals"] if w["tx_hash"] in withdrawals]
        for key in ("total_earned_wei", "withdrawn_wei", "count", "page", "pages", "timeline"):
            found.pop(key, None)
    return body


def test_a_database_rebuilt_from_the_chain_answers_as_the_original(flow, validator_nodes):
    run = flow["run"]
    escrow = TrainingEscrow.deployed()
    settled = next(
        e for e in escrow.job_events(bytes.fromhex(run.job_id)) if e.name == "JobSettled"
    )
    settled_by = settled.args["validators"]
    requests = _requests(flow, validator_nodes.addresses)

    # What only this database holds, and what it names of it.
    owner = user_for(1)
    upload = flow["datasets"][0]
    in_progress_file = Path(settings.DATA_DIR) / f"in-progress-{secrets.token_hex(4)}.csv"
    in_progress_file.write_text("a,b\n1,2\n3,4\n")
    in_progress = dataset_create(
        owner=owner, upload=in_progress_file, original_filename="in-progress.csv",
        title="Still being read", license="CC0-1.0", price_wei=1, enqueue=False,
    )  # fmt: skip
    in_progress_file.unlink()
    unpin(in_progress.upload_cid)  # staged for a worker this test does not run
    quoted = client_for(run.buyer).post(
        "/api/training-runs",
        {"dataset_ids": [upload.pk], "target_column": "target", "model": "logistic_regression"},
        format="json",
    )
    assert quoted.status_code == 201, quoted.json()
    checked = io.StringIO()
    call_command("rebuild_from_chain", "--check", stdout=checked)
    assert f"dataset #{in_progress.pk} “Still being read”: processing" in checked.getvalue()
    assert f"training run #{quoted.json()['id']}" in checked.getvalue()
    assert "awaiting payment" in checked.getvalue()

    # Anyone can make the registry emit a log our code cannot decode: the rebuild names it and
    # goes on, as the indexer does.
    w3 = get_web3()
    attacker = fresh_identity(w3)
    registry = DatasetRegistry.deployed(w3).address
    bad = list_with_raw_cid(w3, registry, attacker, b"\xff\xfe\xc3")
    # ... or name content no node holds: asked of its pins, the node answers at once.
    list_with_raw_cid(w3, registry, attacker, raw_cid_for_sha256("ab" * 32).encode())

    # A rebuild refuses a database that holds anything.
    contracts = json.dumps(flow["contracts"])
    with pytest.raises(CommandError, match="The database is not empty"):
        call_command("rebuild_from_chain", "--contracts", contracts, stdout=io.StringIO())

    # Compared, then what the owner's own list shows (not compared: it holds the upload).
    mine = {"as": owner.address, "path": "/api/datasets/mine?page_size=100"}
    before = answers([*requests, mine])
    run_numbers = {run.pk: "0x" + run.job_id}
    with empty_database() as url:
        output = manage("rebuild_from_chain", "--contracts", contracts, database_url=url)
        asked = json.dumps({"requests": [*requests, mine], "tag": flow["tag"]})
        rebuilt = json.loads(
            manage(database_url=url, stdin=asked, module="tests.chain.api_answers")
        )
        again = subprocess.run(
            [sys.executable, "manage.py", "rebuild_from_chain", "--contracts", contracts],
            cwd=ROOT, env=_env(url), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    assert "Rebuilt from the chain and IPFS" in output
    assert f"log {bad['transactionHash'].to_0x_hex()}#" in output, output
    assert "its metadata is not pinned on this IPFS node" in output, output
    # Nothing of this flow is among what the chain names but could not be restored.
    not_restored = output.split("Never on the chain")[0].split("not restored")[-1]
    assert run.job_id not in not_restored, output
    for dataset in flow["datasets"]:
        assert f"listing {dataset.listing_id}:" not in not_restored, output
    assert "Never on the chain or IPFS, so not rebuilt" in output
    assert "training runs that were never paid" in output
    assert "uploads that were never listed" in output
    assert again.returncode != 0 and "The database is not empty" in again.stderr
    # The run's number in the rebuilt database, from its detail.
    after_run = next(a for a in rebuilt["answers"] if "model_card" in a.get("json", {}))
    run_numbers[after_run["json"]["id"]] = "0x" + run.job_id
    (*before, mine_before), (*after, mine_after) = before, rebuilt["answers"]
    assert len(before) == len(after) == len(requests)
    flow_of = {
        "run_numbers": run_numbers, "settled_by": settled_by,
        "dataset_ids": {d.pk for d in flow["datasets"]}, "withdrawals": {flow["withdrawal"]},
    }  # fmt: skip
    for request, old, new in zip(requests, before, after, strict=True):
        assert old["status"] == 200, (request, old)
        assert _comparable(new, **flow_of) == _comparable(old, **flow_of), request["path"]

    # Every listing of the flow reads back from IPFS with the rebuilt data key, as a training
    # worker reads it, to the rows that were listed.
    listed = {d.listing_id: d.rows for d in flow["datasets"]}
    assert {int(k): v for k, v in rebuilt["trainable"].items()} == listed
    # The upload in progress did not come back; the owner's listings did.
    # (The chain also holds the listings other tests made for this dev account.)
    titles = {d["title"] for d in mine_before["json"]["results"]}
    after_titles = {d["title"] for d in mine_after["json"]["results"]}
    assert "Still being read" in titles and "Still being read" not in after_titles
    assert titles - {"Still being read"} <= after_titles
