"""Training runs end to end on the real stack: quote, the buyer's payment into the escrow, the
Celery worker training on decrypted data, valuation, settlement, downloads and the lineage."""

import hashlib
import json
import os
import signal
import time

import psutil
import pytest
import skops.io as sio
from django.core.management import call_command
from rest_framework.test import APIClient

from chain.client import get_web3
from chain.wrappers import JobState, TrainingEscrow
from tests.datasets.factories import user_for
from tests.training.conftest import BUYER, pay_and_index, wait_for_run, wallet_pay
from training.models import TrainingRun
from training.services import training_run_funding_record

pytestmark = pytest.mark.django_db(transaction=True)


def commission(api, datasets, **overrides):
    body = {
        "dataset_ids": [d.pk for d in datasets],
        "target_column": "target",
        "model": "random_forest",
        "seed": 3,
        **overrides,
    }
    return api.post("/api/training-runs", body, format="json")


def test_a_paid_run_trains_settles_and_pays_each_contributor_by_contribution(
    buyer_api, cancer_datasets, celery_worker, capsys
):
    escrow = TrainingEscrow.deployed()
    clean, noisy = cancer_datasets
    owed_before = {d.owner.address: escrow.balance_of(d.owner.address) for d in cancer_datasets}

    quote = commission(buyer_api, cancer_datasets)
    assert quote.status_code == 201, quote.json()
    body = quote.json()
    assert body["status"] == "awaiting_payment"
    assert body["task"] == "classification"
    assert [b["price_wei"] for b in body["breakdown"]] == [str(2 * 10**16)] * 2
    assert int(body["escrow"]["value_wei"]) == 4 * 10**16 + int(body["compute_fee_wei"])
    assert body["escrow"]["chain_id"] == 31337

    tx_hash = wallet_pay(body["escrow"])
    hint = buyer_api.post(
        f"/api/training-runs/{body['id']}/funding", {"tx_hash": tx_hash}, format="json"
    )
    assert hint.status_code == 200, hint.json()

    run = wait_for_run(body["id"], "completed", "failed")
    assert run.status == "completed", run.error
    detail = buyer_api.get(f"/api/training-runs/{run.pk}").json()
    assert detail["progress"] == 100
    assert detail["metrics"]["accuracy"] > 0.6
    assert set(detail["metrics"]) == {"accuracy", "f1", "roc_auc", "log_loss"}
    amounts = {c["dataset"]: int(c["amount_wei"]) for c in detail["contributions"]}
    assert sum(amounts.values()) == int(run.funded_value_wei) - int(run.fee_wei)
    assert amounts[clean.pk] > amounts[noisy.pk]  # the shuffled labels earned less
    for dataset in cancer_datasets:
        gained = escrow.balance_of(dataset.owner.address) - owed_before[dataset.owner.address]
        assert gained == amounts[dataset.pk]
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == JobState.SETTLED

    model = buyer_api.get(f"/api/training-runs/{run.pk}/model")
    assert model.status_code == 200
    pipeline = sio.loads(model.content, trusted=sio.get_untrusted_types(data=model.content))
    features = clean.columns
    row = {c["name"]: [c.get("mean", 0) or 0] for c in features if c["name"] != "target"}
    import pandas as pd

    assert pipeline.predict(pd.DataFrame(row))[0] in (0, 1)

    call_command("verify_run", str(run.pk))
    out = capsys.readouterr().out
    assert "The lineage verifies from the chain and IPFS." in out
    assert "FAIL" not in out


def test_only_the_buyer_downloads_the_model_and_contributors_read_the_report(
    buyer_api, cancer_datasets, celery_worker
):
    body = commission(buyer_api, cancer_datasets).json()
    pay_and_index(body["escrow"])
    run = wait_for_run(body["id"], "completed", "failed")
    assert run.status == "completed", run.error

    contributor = APIClient()
    contributor.force_authenticate(cancer_datasets[0].owner)
    stranger = APIClient()
    stranger.force_authenticate(user_for(3))

    assert contributor.get(f"/api/training-runs/{run.pk}/model").status_code == 403
    assert stranger.get(f"/api/training-runs/{run.pk}/model").status_code == 403
    report = contributor.get(f"/api/training-runs/{run.pk}/report")
    assert report.status_code == 200
    assert json.loads(report.content)["valuation"]["method"] == "data-oob"
    # The download is the pinned report itself: it hashes to what the settlement recorded.
    assert "0x" + hashlib.sha256(report.content).hexdigest() == run.report_hash
    assert stranger.get(f"/api/training-runs/{run.pk}/report").status_code == 403
    assert APIClient().get(f"/api/training-runs/{run.pk}").status_code == 401


def test_the_same_funding_seen_twice_trains_and_pays_once(
    buyer_api, cancer_datasets, celery_worker
):
    from chain.client import deployed_addresses
    from chain.events import decode_receipt
    from training.models import Earning

    body = commission(buyer_api, cancer_datasets).json()
    tx_hash = wallet_pay(body["escrow"])
    w3 = get_web3()
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    funded = [e for e in decode_receipt(w3, receipt, deployed_addresses()) if e.name == "JobFunded"]

    training_run_funding_record(w3, funded[0])
    training_run_funding_record(w3, funded[0])
    run = wait_for_run(body["id"], "completed", "failed")
    credits = Earning.objects.filter(job_id=run.job_id).count()
    training_run_funding_record(w3, funded[0])  # and once more after the run

    run.refresh_from_db()
    assert run.status == "completed"
    assert run.funding_tx == tx_hash
    assert int(run.funded_value_wei) == int(body["escrow"]["value_wei"])
    events = TrainingEscrow.deployed().job_events(
        bytes.fromhex(run.job_id), buyer=run.buyer.address
    )
    assert [e.name for e in events].count("JobSettled") == 1
    attesters = next(e for e in events if e.name == "JobSettled").args["validators"]
    assert len(attesters) >= 2  # the owners' two credits, then one per attesting validator
    assert Earning.objects.filter(job_id=run.job_id).count() == credits == 2 + len(attesters)


def test_funding_for_an_unknown_job_changes_nothing(buyer_api, cancer_datasets):
    from chain.events import ChainEvent

    event = ChainEvent(
        contract="TrainingEscrow", name="JobFunded",
        args={"jobId": "0x" + "ab" * 32, "buyer": BUYER, "datasetIds": [1], "value": 1, "fee": 0,
              "refundAfter": 0},
        address="0x" + "00" * 20, tx_hash="0x" + "cd" * 32, log_index=0, block_number=1,
    )  # fmt: skip
    before = list(TrainingRun.objects.values_list("pk", "status"))

    training_run_funding_record(get_web3(), event)

    assert list(TrainingRun.objects.values_list("pk", "status")) == before


def test_a_run_that_fails_for_good_is_refunded(buyer_api, cancer_datasets, celery_worker):
    escrow = TrainingEscrow.deployed()
    body = commission(buyer_api, cancer_datasets).json()
    # The record no longer matches the bytes on IPFS: the worker must refuse to train on them.
    type(cancer_datasets[1]).objects.filter(pk=cancer_datasets[1].pk).update(
        content_sha256="0" * 64
    )
    owed_before = escrow.balance_of(BUYER)

    pay_and_index(body["escrow"])
    run = wait_for_run(body["id"], "failed", "completed")

    assert run.status == "failed"
    assert "do not match the hash recorded on-chain" in run.error
    assert run.refund_tx
    assert escrow.balance_of(BUYER) - owed_before == int(body["escrow"]["value_wei"])
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == JobState.REFUNDED
    detail = buyer_api.get(f"/api/training-runs/{run.pk}").json()
    assert detail["status"] == "failed" and detail["refund_tx"] == run.refund_tx


def test_a_worker_killed_mid_run_finishes_it_with_one_settlement(
    buyer_api, cancer_datasets, celery_worker
):
    body = commission(buyer_api, cancer_datasets, model="hist_gradient_boosting").json()
    pay_and_index(body["escrow"])
    deadline = time.monotonic() + 60
    while TrainingRun.objects.get(pk=body["id"]).status != "running":
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.02)

    # SIGKILL the pool processes: the task is lost mid-run and the worker replaces them.
    for child in psutil.Process(celery_worker.pid).children(recursive=True):
        os.kill(child.pid, signal.SIGKILL)

    run = wait_for_run(body["id"], "completed", "failed", timeout=180)
    assert run.status == "completed", run.error
    events = TrainingEscrow.deployed().job_events(
        bytes.fromhex(run.job_id), buyer=run.buyer.address
    )
    assert [e.name for e in events].count("JobSettled") == 1


def test_regression_runs_report_regression_metrics(buyer_api, diabetes_dataset, celery_worker):
    body = commission(buyer_api, [diabetes_dataset], model="ridge").json()
    assert body["task"] == "regression"
    pay_and_index(body["escrow"])

    run = wait_for_run(body["id"], "completed", "failed")

    assert run.status == "completed", run.error
    assert set(run.metrics) == {"r2", "mae", "rmse"}
    assert run.figures["predicted_vs_actual"]
    assert int(run.inputs.get().amount_wei) == int(run.funded_value_wei) - int(run.fee_wei)


BAD_REQUESTS = [
    (lambda d: {"dataset_ids": [999999]}, 404, "unknown_dataset"),
    (lambda d: {"target_column": "no_such_column"}, 400, "missing_target"),
    (lambda d: {"model": "neural_net"}, 400, "unknown_model"),
    (lambda d: {"dataset_ids": []}, 400, None),
    (lambda d: {"dataset_ids": [d[0].pk, d[0].pk]}, 400, "duplicate_dataset"),
    (lambda d: {"test_fraction": 0.9}, 400, "bad_test_fraction"),
]


@pytest.mark.parametrize("case", range(len(BAD_REQUESTS)))
def test_bad_commissions_get_a_reason_and_create_nothing(buyer_api, cancer_datasets, case):
    make, status, code = BAD_REQUESTS[case]
    response = commission(buyer_api, cancer_datasets, **make(cancer_datasets))

    assert response.status_code == status
    assert response.json()["message"]
    if code:
        assert response.json()["extra"]["code"] == code
    assert not TrainingRun.objects.exists()


def test_unlisted_dataset_and_incompatible_schemas_are_refused(
    buyer_api, cancer_datasets, diabetes_dataset
):
    type(cancer_datasets[0]).objects.filter(pk=cancer_datasets[1].pk).update(status="rejected")
    unlisted = commission(buyer_api, cancer_datasets)
    assert unlisted.status_code == 400 and unlisted.json()["extra"]["code"] == "unlisted_dataset"

    mixed = commission(buyer_api, [cancer_datasets[0], diabetes_dataset])
    assert mixed.status_code == 400
    assert mixed.json()["extra"]["code"] in {"incompatible_schemas", "missing_target"}
    assert not TrainingRun.objects.exists()


def test_a_single_class_target_is_refused(buyer_api, contracts, ipfs_node, tmp_path):
    import pandas as pd

    from tests.training.conftest import list_frame

    frame = pd.DataFrame({"x": range(60), "y": [1.5 * i for i in range(60)], "label": ["yes"] * 60})
    single = list_frame(frame, account=1, title="One class", price_wei=1, tmp_path=tmp_path)

    response = commission(buyer_api, [single], target_column="label")

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "single_class"


def test_a_text_target_cannot_be_a_regression_target(buyer_api, contracts, ipfs_node, tmp_path):
    import pandas as pd

    from tests.training.conftest import list_frame

    frame = pd.DataFrame({"x": range(60), "label": ["a", "b", "c"] * 20})
    text = list_frame(frame, account=1, title="Text target", price_wei=1, tmp_path=tmp_path)

    response = commission(
        buyer_api, [text], target_column="label", task="regression", model="ridge"
    )

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "bad_task"


def test_too_few_rows_are_refused(buyer_api, contracts, ipfs_node, tmp_path):
    import pandas as pd

    from tests.training.conftest import list_frame

    frame = pd.DataFrame({"x": range(10), "label": [0, 1] * 5})
    small = list_frame(frame, account=1, title="Tiny", price_wei=1, tmp_path=tmp_path)

    response = commission(buyer_api, [small], target_column="label")

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "too_few_rows"


def test_signed_out_commission_is_401(cancer_datasets):
    response = commission(APIClient(), cancer_datasets)
    assert response.status_code == 401


def test_a_run_awaiting_payment_still_shows_how_to_pay_when_the_chain_is_down(
    buyer_api, cancer_datasets, settings
):
    from marketplace.devstack import free_port

    body = commission(buyer_api, cancer_datasets).json()
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"

    detail = buyer_api.get(f"/api/training-runs/{body['id']}")

    assert detail.status_code == 200
    assert detail.json()["escrow"] == body["escrow"]


@pytest.mark.parametrize(
    ("tx_hash", "status", "code"),
    [
        ("0x1234", 400, "bad_tx_hash"),
        ("0x" + "zz" * 32, 400, "bad_tx_hash"),
        ("0x" + "ab" * 32, 409, "not_mined"),  # no such transaction (yet)
    ],
)
def test_a_funding_hint_that_is_not_a_mined_payment_is_refused(
    buyer_api, cancer_datasets, tx_hash, status, code
):
    body = commission(buyer_api, cancer_datasets).json()

    response = buyer_api.post(
        f"/api/training-runs/{body['id']}/funding", {"tx_hash": tx_hash}, format="json"
    )

    assert response.status_code == status
    assert response.json()["extra"]["code"] == code
    assert TrainingRun.objects.get(pk=body["id"]).status == "awaiting_payment"


def test_a_funding_hint_for_another_transaction_is_refused(buyer_api, cancer_datasets):
    first = commission(buyer_api, cancer_datasets).json()
    second = commission(buyer_api, cancer_datasets, seed=4).json()
    paid_first = wallet_pay(first["escrow"])

    response = buyer_api.post(
        f"/api/training-runs/{second['id']}/funding", {"tx_hash": paid_first}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "not_this_run"
    assert TrainingRun.objects.get(pk=second["id"]).status == "awaiting_payment"
