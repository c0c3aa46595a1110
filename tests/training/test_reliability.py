"""Runs under trouble: nodes that do not answer, a run that outlives its time limit."""

import numpy as np
import pandas as pd
import pytest
from django.test import override_settings

from chain.client import ChainUnavailable
from chain.wrappers import JobState, TrainingEscrow
from marketplace.devstack import free_port
from marketplace.ipfs import IpfsUnavailable
from tests.training.conftest import (
    BUYER,
    commission_and_pay,
    execute_attested,
    list_frame,
    wait_for_run,
)
from training.models import TrainingRun
from training.services import training_run_execute


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "error"), [("IPFS_API_URL", IpfsUnavailable), ("CHAIN_RPC_URL", ChainUnavailable)]
)
def test_a_node_outage_leaves_the_run_resumable_and_it_completes_when_back(
    buyer_api, cancer_datasets, setting, error, staked_validators
):
    # In this test's transaction the funding's enqueue never fires: the test plays the worker.
    run = commission_and_pay(buyer_api, cancer_datasets)
    assert run.status == "funded"

    with override_settings(**{setting: f"http://127.0.0.1:{free_port()}"}):
        with pytest.raises(error):  # the task retries this with backoff
            training_run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status in ("funded", "running")
    assert not run.refund_tx and not run.error

    execute_attested(run.pk)  # the node is back

    run.refresh_from_db()
    assert run.status == "completed"
    assert (
        TrainingEscrow.deployed().job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address)
        == JobState.SETTLED
    )


@pytest.mark.django_db(transaction=True)
def test_a_run_that_outlives_its_time_limit_is_refunded(
    buyer_api, contracts, ipfs_node, celery_worker, tmp_path
):
    rng = np.random.default_rng(4)
    features = rng.normal(size=(30_000, 12))
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(12)])
    frame["target"] = (features[:, 0] + rng.normal(size=30_000) > 0).astype(int)
    big = list_frame(frame, account=1, title="Big", price_wei=10**15, tmp_path=tmp_path)
    escrow = TrainingEscrow.deployed()
    owed_before = escrow.balance_of(BUYER)

    with override_settings(TRAINING_SOFT_TIME_LIMIT_SECONDS=1):  # a one-second budget
        run = commission_and_pay(buyer_api, [big])
    run = wait_for_run(run.pk, "failed", "completed", timeout=120)

    assert run.status == "failed"
    assert "did not finish within its time limit" in run.error
    assert run.refund_tx
    assert escrow.balance_of(BUYER) - owed_before == run.funded_value_wei
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == JobState.REFUNDED


@pytest.mark.django_db
def test_a_continuous_target_is_refused_for_classification(buyer_api, diabetes_dataset):
    response = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [diabetes_dataset.pk], "target_column": "target",
         "model": "random_forest", "task": "classification"},
        format="json",
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "bad_task"
    assert not TrainingRun.objects.exists()
