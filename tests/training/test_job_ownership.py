"""A run's job belongs to its buyer: the job id is readable before payment, and whoever funds it
first must neither block the buyer's payment nor pass for it."""

import pytest

from chain.client import deployed_addresses, get_web3
from chain.events import decode_receipt
from chain.indexer import chain_index_catch_up
from chain.wrappers import JobTerms, TrainingEscrow
from tests.training.conftest import wait_for_run, wallet_pay
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)

STRANGER = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # anvil dev account 5 (unlocked)


def escrow_events(tx_hash: str, name: str):
    w3 = get_web3()
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    return [e for e in decode_receipt(w3, receipt, deployed_addresses()) if e.name == name]


def test_a_strangers_funding_of_the_job_id_is_neither_counted_nor_blocking(
    buyer_api, cancer_datasets, celery_worker
):
    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in cancer_datasets], "target_column": "target",
         "model": "random_forest", "seed": 4},
        format="json",
    ).json()  # fmt: skip
    run_id = body["id"]

    # The stranger sends the very payment the buyer was offered, from its own wallet, first.
    theirs = wallet_pay(body["escrow"], sender=STRANGER)
    chain_index_catch_up(w3=get_web3())  # what beat's indexer tick does
    assert TrainingRun.objects.get(pk=run_id).status == TrainingRun.Status.AWAITING_PAYMENT
    refused = buyer_api.post(
        f"/api/training-runs/{run_id}/funding", {"tx_hash": theirs}, format="json"
    )
    assert refused.status_code == 400, refused.json()
    assert refused.json()["extra"]["code"] == "not_this_run"
    # Its job is refunded to it (as it may do itself after the delay): not the run's refund.
    stranger_job = JobTerms.from_event(escrow_events(theirs, "JobFunded")[0])
    assert stranger_job.buyer == STRANGER
    TrainingEscrow.deployed().refund(job=stranger_job)
    chain_index_catch_up(w3=get_web3())
    run = TrainingRun.objects.get(pk=run_id)
    assert (run.status, run.error, run.refund_tx) == (TrainingRun.Status.AWAITING_PAYMENT, "", "")

    # The buyer still pays, and the run trains and pays the datasets' owners.
    paid = wallet_pay(body["escrow"])
    hint = buyer_api.post(f"/api/training-runs/{run_id}/funding", {"tx_hash": paid}, format="json")
    assert hint.status_code == 200, hint.json()
    run = wait_for_run(run_id, "completed", "failed")
    assert run.status == TrainingRun.Status.COMPLETED, run.error
    assert run.funding_tx == paid
    escrow = TrainingEscrow.deployed()
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == 2  # settled
    assert escrow.job_state(bytes.fromhex(run.job_id), buyer=STRANGER) == 3  # its own, refunded
    settled = escrow_events(run.settlement_tx, "PayeeCredited")[: len(cancer_datasets)]
    assert [e.args["payee"] for e in settled] == [d.owner.address for d in cancer_datasets]
    assert sum(e.args["amount"] for e in settled) == int(run.funded_value_wei) - int(run.fee_wei)
    chain_index_catch_up(w3=get_web3())
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.COMPLETED
    assert run.funding_tx == paid

    # The refund is the stranger's to take back; it does, so its account holds nothing in the
    # escrow again (other tests see it as an account nobody pays).
    refunded = escrow.balance_of(STRANGER)
    assert refunded == stranger_job.value_wei
    withdraw = escrow.withdraw_request()
    w3 = get_web3()
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": STRANGER, "to": withdraw.to, "data": withdraw.data})
    )
    assert escrow.balance_of(STRANGER) == 0
