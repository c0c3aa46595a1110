"""Earnings: credited by settlement, read back per dataset, withdrawn from the user's wallet."""

import pytest
from rest_framework.test import APIClient

from chain.client import get_web3
from chain.wrappers import TrainingEscrow
from tests.datasets.factories import user_for
from tests.training.conftest import run_to_completion
from training.models import Withdrawal

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def completed_run(buyer_api, cancer_datasets, celery_worker):
    return run_to_completion(buyer_api, cancer_datasets, model="logistic_regression", seed=1)


def test_a_contributor_sees_what_the_report_assigned_to_their_dataset_and_withdraws(
    completed_run, cancer_datasets
):
    owner = cancer_datasets[0].owner
    api = client_for(owner)
    escrow = TrainingEscrow.deployed()
    assigned = next(
        int(d["amount_wei"]) for d in completed_run.report["datasets"]
        if d["listing_id"] == cancer_datasets[0].listing_id
    )  # fmt: skip

    body = api.get("/api/earnings").json()

    assert body["address"] == owner.address
    assert int(body["withdrawable_wei"]) == escrow.balance_of(owner.address) >= assigned
    entry = next(e for e in body["entries"] if e["run_id"] == completed_run.pk)
    assert entry["dataset_id"] == cancer_datasets[0].pk
    assert int(entry["amount_wei"]) == assigned
    assert entry["tx_hash"] == completed_run.settlement_tx
    per_dataset = {d["dataset_id"]: d for d in body["per_dataset"]}
    assert int(per_dataset[cancer_datasets[0].pk]["amount_wei"]) >= assigned

    w3 = get_web3()
    owed = int(body["withdrawable_wei"])
    before = w3.eth.get_balance(owner.address)
    tx_hash = w3.eth.send_transaction(
        {"from": owner.address, "to": body["withdraw"]["to"], "data": body["withdraw"]["data"]}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    after = api.post("/api/earnings/withdrawals", {"tx_hash": tx_hash.to_0x_hex()}, format="json")

    assert after.status_code == 200
    assert after.json()["withdrawable_wei"] == "0"
    assert after.json()["withdraw"] is None
    assert int(after.json()["withdrawn_wei"]) >= owed
    assert after.json()["withdrawals"][0]["tx_hash"] == tx_hash.to_0x_hex()
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(owner.address) == before + owed - gas
    assert Withdrawal.objects.filter(account=owner.address).count() == 1


def test_a_user_who_never_listed_has_an_empty_history(completed_run):
    body = client_for(user_for(3)).get("/api/earnings").json()

    assert body["entries"] == [] and body["count"] == 0
    assert body["total_earned_wei"] == "0"
    assert body["withdraw"] is None or int(body["withdrawable_wei"]) > 0


def test_one_user_never_sees_anothers_entries(completed_run, cancer_datasets):
    first = client_for(cancer_datasets[0].owner).get("/api/earnings").json()
    second = client_for(cancer_datasets[1].owner).get("/api/earnings").json()

    assert {e["dataset_id"] for e in first["entries"]} == {cancer_datasets[0].pk}
    assert {e["dataset_id"] for e in second["entries"]} == {cancer_datasets[1].pk}


def test_a_withdrawal_hint_for_someone_elses_transaction_is_refused(completed_run, cancer_datasets):
    owner, other = cancer_datasets[0].owner, cancer_datasets[1].owner
    w3 = get_web3()
    request = TrainingEscrow.deployed().withdraw_request()
    tx_hash = w3.eth.send_transaction(
        {"from": owner.address, "to": request.to, "data": request.data}
    )
    w3.eth.wait_for_transaction_receipt(tx_hash)

    response = client_for(other).post(
        "/api/earnings/withdrawals", {"tx_hash": tx_hash.to_0x_hex()}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "not_yours"


def test_signed_out_earnings_are_401_and_the_page_asks_to_sign_in(client, db):
    assert APIClient().get("/api/earnings").status_code == 401
    response = client.get("/earnings/")
    assert response.status_code == 302
    assert response["Location"] == "/signin/?next=/earnings/"


def test_the_indexer_records_credits_and_withdrawals_too(completed_run, cancer_datasets):
    from chain.indexer import chain_index_catch_up
    from training.models import Earning

    Earning.objects.all().delete()
    chain_index_catch_up(w3=get_web3())

    owners = {d.owner.address for d in cancer_datasets}
    credited = Earning.objects.filter(job_id=completed_run.job_id)
    to_owners = [e for e in credited if e.payee in owners]
    assert {e.payee for e in to_owners} == owners
    assert sum(e.amount_wei for e in to_owners) == (
        completed_run.funded_value_wei - completed_run.fee_wei
    )
    # The rest is the attesting validators' share of the fee, credited like any payee.
    attested = {
        r.validator.address
        for r in completed_run.attestation_round.requests.filter(status="attested")
    }
    to_validators = [e for e in credited if e.payee not in owners]
    assert len(to_validators) >= 2
    assert {e.payee for e in to_validators} <= attested


def test_a_datasets_page_and_api_show_its_runs_and_total_earnings(
    completed_run, cancer_datasets, client
):
    dataset = cancer_datasets[0]
    assigned = next(
        int(d["amount_wei"])
        for d in completed_run.report["datasets"]
        if d["listing_id"] == dataset.listing_id
    )

    usage = APIClient().get(f"/api/datasets/{dataset.pk}").json()["usage"]
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()

    assert usage == {"runs": 1, "earned_wei": str(assigned)}
    assert "Used by 1 completed training run, earning" in page
    assert f"{assigned} wei" in page


@pytest.mark.parametrize(("tx_hash", "status"), [("nonsense", 400), ("0x" + "cd" * 32, 409)])
def test_a_withdrawal_hint_that_is_not_a_mined_transaction_is_refused(
    cancer_datasets, tx_hash, status
):
    response = client_for(cancer_datasets[0].owner).post(
        "/api/earnings/withdrawals", {"tx_hash": tx_hash}, format="json"
    )

    assert response.status_code == status
    assert response.json()["message"]
    assert not Withdrawal.objects.exists()
