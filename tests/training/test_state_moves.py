"""A run's final moves hold under redelivery, late settlements and failures: the chain has the
last word, refunds are followed to their receipts, and the stored model and report always hash to
what the settlement recorded. The test plays the worker in this process."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import pytest
from django.test import override_settings

from chain.client import get_web3
from chain.models import ChainTransaction
from chain.sender import TransactionPending
from chain.wrappers import JobState, TrainingEscrow, settle_intent
from marketplace.ipfs import normalize_cid, pinned_cids, raw_cid_for_sha256
from tests.conftest import attest_in_process
from tests.marketplace.test_outages import closed_url  # noqa: F401 - a fixture
from tests.training.conftest import commission_and_pay, execute_attested, wait_for_run, wallet_pay
from training import pipeline
from training.models import TrainingRun
from training.services import (
    training_run_artifacts_record,
    training_run_execute,
    training_run_fail,
    training_run_refund,
    training_run_settle,
    training_runs_resume,
)
from training.tasks import run_training

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("staked_validators")]


@contextmanager
def mining_paused():
    """Transactions wait in anvil's pool until the block ends (then they are all mined)."""
    w3 = get_web3()
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        yield w3
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
        w3.provider.make_request("evm_mine", [])


def pinned(cid: str) -> bool:
    return normalize_cid(cid) in pinned_cids()


def settled_event(run: TrainingRun):
    events = TrainingEscrow.deployed().job_events(
        bytes.fromhex(run.job_id), buyer=run.buyer.address
    )
    return next(e for e in events if e.name == "JobSettled")


def test_a_settlement_mined_late_is_recorded_as_settled_never_refunded(buyer_api, cancer_datasets):
    run = commission_and_pay(buyer_api, cancer_datasets)
    escrow = TrainingEscrow.deployed()

    with override_settings(CHAIN_TX_WAIT_SECONDS=1), mining_paused() as w3:
        training_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert (run.status, run.stage) == (TrainingRun.Status.SETTLING, "attesting")
        assert attest_in_process(run) == 3
        with pytest.raises(TransactionPending):  # the task retries this
            training_run_settle(run_id=run.pk)

        # The run is then stopped (e.g. by its time limit) while the settlement is pending.
        assert training_run_fail(run_id=run.pk, reason="The run did not finish in time.")
        with pytest.raises(TransactionPending):  # the refund waits for the settlement first
            training_run_refund(run_id=run.pk)
        assert not ChainTransaction.objects.filter(intent__startswith="refund:").exists()
        w3.provider.make_request("evm_mine", [])

        training_run_refund(run_id=run.pk)  # the retry finds the settlement mined

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.COMPLETED
    assert run.refund_tx == "" and run.error == ""
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == JobState.SETTLED
    assert run.settlement_tx == settled_event(run).tx_hash
    assert buyer_api.get(f"/api/training-runs/{run.pk}/model").status_code == 200
    training_run_refund(run_id=run.pk)  # a redelivered refund does nothing
    assert not ChainTransaction.objects.filter(intent__startswith="refund:").exists()


def test_a_later_delivery_never_overwrites_what_was_settled(
    buyer_api, cancer_datasets, django_capture_on_commit_callbacks
):
    run = commission_and_pay(buyer_api, cancer_datasets)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)
    run.refresh_from_db()
    # A second delivery of the same message trains alongside the first and packages its own.
    late = pipeline.train_and_package(run, on_stage=lambda stage, progress: None)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FUNDED)

    execute_attested(run.pk)  # the first delivery completes and settles
    with django_capture_on_commit_callbacks(execute=True):
        recorded = training_run_artifacts_record(run_id=run.pk, packaged=late)
    training_run_execute(run_id=run.pk)  # and a redelivery after the end changes nothing

    run.refresh_from_db()
    event = settled_event(run)
    assert recorded is False
    assert run.status == TrainingRun.Status.COMPLETED
    assert late.model_cid != run.model_cid
    assert pinned(run.model_cid) and pinned(raw_cid_for_sha256(run.report_hash[2:]))
    assert (run.model_cid, run.report_hash) == (event.args["modelCid"], event.args["reportHash"])
    report = buyer_api.get(f"/api/training-runs/{run.pk}/report")
    assert report.status_code == 200
    assert "0x" + hashlib.sha256(report.content).hexdigest() == run.report_hash
    assert not pinned(late.model_cid), "the late delivery's model stayed pinned"
    # The report is a function of the job and its data: the late delivery computed the very
    # report that was settled, whose block stays pinned (only the model's ciphertext differs).
    assert late.report_hash == run.report_hash
    assert late.report == run.report


def test_a_failed_run_says_what_failed_and_its_refund_is_followed_to_the_receipt(
    buyer_api, cancer_datasets
):
    escrow = TrainingEscrow.deployed()
    run = commission_and_pay(buyer_api, cancer_datasets)
    owed_before = escrow.balance_of(run.buyer.address)
    # A dataset key that no longer opens its data: an error nobody planned for.
    cancer_datasets[1].__class__.objects.filter(pk=cancer_datasets[1].pk).update(
        wrapped_data_key=b"\0" * 60
    )

    run_training.apply(args=[run.pk])  # the task body, as the worker runs it

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.REFUNDING
    assert "while fetching and decrypting the datasets" in run.error
    assert "internal error" not in run.error

    training_run_refund(run_id=run.pk)
    training_run_refund(run_id=run.pk)  # redelivered: one refund only

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.refund_tx and f"refunded to your wallet (transaction {run.refund_tx})" in run.error
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == JobState.REFUNDED
    assert escrow.balance_of(run.buyer.address) - owed_before == run.funded_value_wei
    assert ChainTransaction.objects.filter(intent__startswith="refund:").count() == 1
    assert not ChainTransaction.objects.filter(
        intent=settle_intent(bytes.fromhex(run.job_id))
    ).exists()


def test_a_refund_after_the_settlement_was_mined_records_the_settlement(buyer_api, cancer_datasets):
    run = commission_and_pay(buyer_api, cancer_datasets)
    execute_attested(run.pk)
    # The database lost the completion (e.g. restored from a backup taken while settling).
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.REFUNDING, settlement_tx="", error="Stopped."
    )

    training_run_refund(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.COMPLETED and run.refund_tx == ""
    assert run.settlement_tx == settled_event(run).tx_hash


def test_a_second_message_for_a_run_another_task_took_trains_nothing(buyer_api, cancer_datasets):
    run = commission_and_pay(buyer_api, cancer_datasets)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, claimed_by="first-task"
    )

    training_run_execute(run_id=run.pk, task_id="second-task")

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.report_hash == ""
    assert not ChainTransaction.objects.filter(intent=settle_intent(bytes.fromhex(run.job_id)))

    execute_attested(run.pk, task_id="first-task")  # its redelivery resumes it

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_a_payment_seen_while_the_queue_is_down_is_trained_once_it_is_back(
    buyer_api,
    cancer_datasets,
    celery_worker,
    settings,
    closed_url,  # noqa: F811
):
    from tests.marketplace.test_outages import redis_down

    broker_down = contextmanager(redis_down.__wrapped__)
    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in cancer_datasets], "target_column": "target",
         "model": "random_forest", "seed": 2},
        format="json",
    ).json()  # fmt: skip
    tx_hash = wallet_pay(body["escrow"])

    with broker_down(settings, closed_url):
        hint = buyer_api.post(
            f"/api/training-runs/{body['id']}/funding", {"tx_hash": tx_hash}, format="json"
        )

    assert hint.status_code == 200, hint.json()  # the payment is recorded, nothing is lost
    assert TrainingRun.objects.get(pk=body["id"]).status == TrainingRun.Status.FUNDED
    assert training_runs_resume(stalled_for_seconds=0) == [body["id"]]
    run = wait_for_run(body["id"], "completed", "failed")
    assert run.status == TrainingRun.Status.COMPLETED, run.error
