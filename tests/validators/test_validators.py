"""Validators as separate processes (manage.py run_validator, with no database, broker or master
key) re-compute each run; the escrow pays only with a quorum of their EIP-712 attestations."""

from __future__ import annotations

import base64
import time

import pytest
from django.conf import settings
from django.utils import timezone
from eth_account import Account

from chain.attestations import payouts_hash, recover_attester, sign_attestation
from chain.client import get_web3
from chain.wrappers import IdentityRegistry, TrainingEscrow
from marketplace.crypto import seal_to, unwrap_data_key, x25519_keypair
from marketplace.devstack import dev_private_key
from marketplace.did import ENCRYPTION_KEY_ATTRIBUTE
from tests.training.conftest import commission_and_pay, run_to_completion, wait_for_run
from training.models import TrainingRun
from validators.models import AttestationRequest, AttestationRound
from validators.services import dataset_key_context

pytestmark = pytest.mark.django_db(transaction=True)


def _credits(escrow: TrainingEscrow, run: TrainingRun) -> dict[str, int]:
    credited: dict[str, int] = {}
    for event in escrow.job_events(bytes.fromhex(run.job_id)):
        if event.name == "PayeeCredited":
            payee = event.args["payee"]
            credited[payee] = credited.get(payee, 0) + event.args["amount"]
    return credited


def test_a_quorum_of_validators_attests_and_the_escrow_pays_them_and_the_owners(
    celery_worker, validator_nodes, buyer_api, cancer_datasets
):
    escrow = TrainingEscrow.deployed()
    run = run_to_completion(buyer_api, cancer_datasets, model="logistic_regression", seed=4)
    body = buyer_api.get(f"/api/training-runs/{run.pk}").json()

    assert body["quorum"] == 2
    assert len(body["attestations"]) >= 2
    expected_payouts = (
        "0x"
        + payouts_hash(
            [c["owner"] for c in body["contributions"]],
            [int(c["amount_wei"]) for c in body["contributions"]],
        ).hex()
    )
    for attestation in body["attestations"]:
        # Anyone can check each signature from the API's values and the chain's escrow.
        assert attestation["report_hash"] == body["report_hash"]
        assert attestation["payouts_hash"] == expected_payouts
        signer = recover_attester(
            bytes.fromhex(attestation["signature"][2:]), chain_id=settings.CHAIN_ID,
            escrow=escrow.address, job_id=bytes.fromhex(body["job_id"][2:]),
            report_hash=bytes.fromhex(body["report_hash"][2:]),
            payouts_hash=bytes.fromhex(expected_payouts[2:]),
        )  # fmt: skip
        assert signer == attestation["validator"]
        assert signer in validator_nodes.addresses

    credited = _credits(escrow, run)
    terms = escrow.validator_terms()
    paid_validators = {a: v for a, v in credited.items() if a in validator_nodes.addresses}
    # The attestations in when the run settled are the ones paid (a late one is listed, unpaid).
    assert len(paid_validators) >= 2
    assert set(paid_validators) <= {a["validator"] for a in body["attestations"]}
    share = int(run.fee_wei) * terms.validator_fee_bps // 10_000 // len(paid_validators)
    assert share > 0
    assert set(paid_validators.values()) == {share}
    for contribution in body["contributions"]:
        assert credited[contribution["owner"]] == int(contribution["amount_wei"])

    listed = {v["address"]: v for v in buyer_api.get("/api/validators").json()}
    for address in paid_validators:
        assert listed[address]["status"] == "active"
        assert listed[address]["attestations"] >= 1
        assert int(listed[address]["stake_wei"]) >= terms.min_stake_wei
        assert listed[address]["did"].endswith(address)


def test_a_run_settles_with_one_validator_stopped(
    celery_worker, validator_nodes, buyer_api, cancer_datasets
):
    validator_nodes.stop(14)
    try:
        run = run_to_completion(buyer_api, cancer_datasets, model="random_forest", seed=5)
        body = buyer_api.get(f"/api/training-runs/{run.pk}").json()
        answers = {v["validator"]: v["status"] for v in body["validators"]}
        assert answers[validator_nodes.address(14)] == "open"
        assert sorted(a["validator"] for a in body["attestations"]) == sorted(
            validator_nodes.address(a) for a in (12, 13)
        )
    finally:
        validator_nodes.start(14)
        validator_nodes.wait_until_registered(14)


def _wait(condition, timeout: float = 120, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_with_two_validators_stopped_the_run_is_refunded_after_the_deadline(
    celery_worker, validator_nodes, buyer_api, cancer_datasets
):
    from training.services import queue_settlement

    validator_nodes.stop(13)
    validator_nodes.stop(14)
    try:
        run = commission_and_pay(buyer_api, cancer_datasets)
        _wait(
            lambda: AttestationRequest.objects.filter(
                round__run=run, status=AttestationRequest.Status.ATTESTED
            ).exists(),
            what="the running validator's attestation",
        )
        run = _wait(
            lambda: TrainingRun.objects.filter(pk=run.pk, stage="attesting").first(),
            what="the run waiting for attestations",
        )
        assert run.status == "settling"
        # The deadline passes: the run is not settled but refunded, and says why.
        AttestationRound.objects.filter(run=run).update(deadline=timezone.now())
        queue_settlement(run.pk)
        run = wait_for_run(run.pk, "failed", "completed")
        assert run.status == "failed"
        assert "1 of 3 validators attested this run's report; 2 are needed" in run.error
        assert "did not answer" in run.error
        assert "refunded" in run.error
        escrow = TrainingEscrow.deployed()
        assert escrow.job_state(bytes.fromhex(run.job_id), buyer=run.buyer.address) == 3
        assert not run.settlement_tx
    finally:
        for account in (13, 14):
            validator_nodes.start(account)
        for account in (13, 14):
            validator_nodes.wait_until_registered(account)


# --- requests whose terms were altered -----------------------------------------------------------


@pytest.fixture
def inspector(tmp_path, contracts, ipfs_node):
    """A validator node run in this process (dev account 17, not staked), to hand it requests
    directly."""
    from validators.node import NodeConfig, ValidatorNode

    node = ValidatorNode(
        NodeConfig(
            private_key=dev_private_key(17), marketplace_url="http://127.0.0.1:9",
            rpc_url=settings.CHAIN_RPC_URL, state_dir=tmp_path / "inspector",
            contracts={name: address for name, address in contracts.items()},
        )
    )  # fmt: skip
    node.connect()
    return node


def _request_for(node, run: TrainingRun, datasets, *, keys: dict | None = None) -> dict:
    """The run's genuine request (as the marketplace published it), re-sealed to `node`'s key."""
    from validators.selectors import request_detail

    published = AttestationRequest.objects.filter(round__run=run).first()
    request = request_detail(published)
    data_keys = keys or {
        d.listing_id: unwrap_data_key(
            d.wrapped_data_key, settings.MASTER_KEY, context=d.key_context
        )
        for d in datasets
    }
    request["sealed_keys"] = {
        str(listing_id): base64.b64encode(
            seal_to(
                node.x25519_public,
                data_keys[listing_id],
                context=dataset_key_context(request["job_id"], listing_id),
            )
        ).decode()
        for listing_id in data_keys
    }
    return request


def test_a_validator_refuses_altered_terms_and_says_why(
    celery_worker, validator_nodes, buyer_api, cancer_datasets, inspector
):
    run = run_to_completion(buyer_api, cancer_datasets, model="random_forest", seed=6)

    genuine = inspector.answer(_request_for(inspector, run, cancer_datasets))
    assert genuine["report_hash"] == run.report_hash  # re-computed byte for byte

    other_amount = _request_for(inspector, run, cancer_datasets)
    other_amount["id"] += 1000
    other_amount["spec"]["value_wei"] = str(int(other_amount["spec"]["value_wei"]) + 1)
    answer = inspector.answer(other_amount)
    assert "signature" in answer and "report_hash" not in answer
    assert "the terms differ from the chain" in answer["refusal"]
    assert "value" in answer["refusal"]

    first, second = cancer_datasets
    keys = {
        d.listing_id: unwrap_data_key(
            d.wrapped_data_key, settings.MASTER_KEY, context=d.key_context
        )
        for d in cancer_datasets
    }
    swapped = _request_for(
        inspector, run, cancer_datasets,
        keys={first.listing_id: keys[second.listing_id], second.listing_id: keys[first.listing_id]},
    )  # fmt: skip
    answer = inspector.answer(swapped)
    assert answer["refusal"] == (
        f"the key handed over for listing {first.listing_id} does not decrypt its data"
    )

    other_code = _request_for(inspector, run, cancer_datasets)
    other_code["spec"]["code_version"] = "0" * 40
    answer = inspector.answer(other_code)
    assert answer["refusal"].startswith(f"the run is to be computed by code version {'0' * 40}")


def test_answers_must_be_signed_by_the_assigned_validator(
    celery_worker, validator_nodes, buyer_api, cancer_datasets, client
):
    validator_nodes.stop(14)
    try:
        run = commission_and_pay(buyer_api, cancer_datasets, seed=8)
        absent = validator_nodes.address(14)
        request = _wait(
            lambda: AttestationRequest.objects.filter(
                round__run=run, validator__address=absent
            ).first(),
            what="the request to the stopped validator",
        )
        escrow = TrainingEscrow.deployed().address
        attestation = {
            "chain_id": settings.CHAIN_ID, "escrow": escrow, "job_id": bytes.fromhex(run.job_id),
            "report_hash": b"\5" * 32, "payouts_hash": b"\6" * 32,
        }  # fmt: skip
        body = {"report_hash": "0x" + "05" * 32, "payouts_hash": "0x" + "06" * 32}

        stranger = sign_attestation(dev_private_key(17), **attestation)
        response = client.post(
            f"/api/attestation-requests/{request.pk}/attestation",
            {**body, "signature": "0x" + stranger.hex()},
            content_type="application/json",
        )
        assert response.status_code == 403
        assert response.json()["extra"]["code"] == "wrong_signer"
        assert "assigned validator" in response.json()["message"]

        refusal = client.post(
            f"/api/attestation-requests/{request.pk}/refusal",
            {"signature": "0x" + stranger.hex(), "refusal": "I was not asked"},
            content_type="application/json",
        )
        assert refusal.status_code == 403  # a refusal in its name is refused too
        assert refusal.json()["extra"]["code"] == "wrong_signer"

        # The assigned validator's own signature of another report is taken, and does not count.
        own = sign_attestation(dev_private_key(14), **attestation)
        answered = client.post(
            f"/api/attestation-requests/{request.pk}/attestation",
            {**body, "signature": "0x" + own.hex()},
            content_type="application/json",
        )
        assert answered.status_code == 200, answered.content
        again = client.post(
            f"/api/attestation-requests/{request.pk}/attestation",
            {**body, "signature": "0x" + stranger.hex()},
            content_type="application/json",
        )
        assert again.status_code == 409

        run = wait_for_run(run.pk, "completed", "failed")
        assert run.status == "completed", run.error
        detail = buyer_api.get(f"/api/training-runs/{run.pk}").json()
        answers = {v["validator"]: v for v in detail["validators"]}
        assert answers[absent]["status"] == "attested" and not answers[absent]["agrees"]
        credited = _credits(TrainingEscrow.deployed(), run)
        assert absent not in credited
    finally:
        validator_nodes.start(14)
        validator_nodes.wait_until_registered(14)


# --- staking, unstaking and slashing ------------------------------------------------------------


def _send(w3, escrow: TrainingEscrow, request, sender: str):
    tx_hash = w3.eth.send_transaction(
        {"from": sender, "to": request.to, "data": request.data, "value": request.value_wei}
    )
    return w3.eth.wait_for_transaction_receipt(tx_hash)


def test_unstaking_waits_for_the_delay_and_stops_new_requests(contracts, db):
    from validators.services import assigned, validators_refresh

    w3 = get_web3()
    escrow = TrainingEscrow.deployed()
    terms = escrow.validator_terms()
    leaver = Account.from_key(dev_private_key(15)).address
    assert _send(w3, escrow, escrow.stake_request(terms.min_stake_wei), leaver)["status"] == 1
    identity = IdentityRegistry.deployed()
    publish = identity.set_attribute_request(
        leaver, ENCRYPTION_KEY_ATTRIBUTE.encode(), x25519_keypair()[1], 3600
    )
    assert _send(w3, escrow, publish, leaver)["status"] == 1
    job = b"\7" * 32
    everyone = assigned(job, validators_refresh(escrow), count=100, min_stake=terms.min_stake_wei)
    assert leaver in [v.address for v in everyone]  # staked with a key: it gets requests
    assert _send(w3, escrow, escrow.request_unstake_request(), leaver)["status"] == 1
    state = escrow.validator_of(leaver)
    assert state.status == 2
    refused = w3.eth.send_transaction(
        {"from": leaver, "to": escrow.address, "data": escrow.withdraw_stake_request().data,
         "gas": 200_000}
    )  # fmt: skip
    assert w3.eth.wait_for_transaction_receipt(refused)["status"] == 0
    refreshed = validators_refresh(escrow)
    assert [v.status for v in refreshed if v.address == leaver] == ["leaving"]
    assert leaver not in [
        v.address for v in assigned(job, refreshed, count=100, min_stake=terms.min_stake_wei)
    ]
    w3.provider.make_request("evm_increaseTime", [terms.unbonding_delay_seconds + 1])
    w3.provider.make_request("evm_mine", [])
    balance = w3.eth.get_balance(leaver)
    receipt = _send(w3, escrow, escrow.withdraw_stake_request(), leaver)
    assert receipt["status"] == 1
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(leaver) == balance + terms.min_stake_wei - gas
    assert escrow.validator_of(leaver).stake_wei == 0


def test_two_conflicting_attestations_slash_the_validator(contracts, db, client):
    from chain.indexer import chain_index_catch_up

    w3 = get_web3()
    escrow = TrainingEscrow.deployed()
    terms = escrow.validator_terms()
    key = dev_private_key(16)
    cheat = Account.from_key(key).address
    reporter = Account.from_key(dev_private_key(5)).address
    assert _send(w3, escrow, escrow.stake_request(terms.min_stake_wei), cheat)["status"] == 1
    job = b"\x42" * 32
    signed = {
        report: sign_attestation(
            key,
            chain_id=settings.CHAIN_ID,
            escrow=escrow.address,
            job_id=job,
            report_hash=report,
            payouts_hash=b"\3" * 32,
        )  # fmt: skip
        for report in (b"\1" * 32, b"\2" * 32)
    }
    before = escrow.balance_of(reporter)
    request = escrow.slash_request(
        job,
        (b"\1" * 32, b"\3" * 32, signed[b"\1" * 32]),
        (b"\2" * 32, b"\3" * 32, signed[b"\2" * 32]),
    )
    assert _send(w3, escrow, request, reporter)["status"] == 1

    reward = terms.min_stake_wei * terms.slash_reward_bps // 10_000
    assert escrow.balance_of(reporter) == before + reward
    assert escrow.validator_of(cheat).status == 3
    assert not escrow.is_validator(cheat)
    again = w3.eth.send_transaction(
        {"from": cheat, "to": escrow.address, "data": escrow.stake_request(1).data,
         "value": terms.min_stake_wei, "gas": 200_000}
    )  # fmt: skip
    assert w3.eth.wait_for_transaction_receipt(again)["status"] == 0

    chain_index_catch_up(w3=w3)
    listed = {v["address"]: v for v in client.get("/api/validators").json()}
    assert listed[cheat]["status"] == "removed"
    assert int(listed[cheat]["slashed_wei"]) == terms.min_stake_wei
    page = client.get("/validators/").content.decode()
    assert cheat in page and "Removed (slashed)" in page


def test_the_validators_page_says_how_to_run_one(client, db):
    page = client.get("/validators/").content.decode()
    assert "manage.py run_validator" in page
    assert "No validator has staked yet" in page
    assert client.get("/api/validators").json() == []


def test_a_validator_node_has_no_database(tmp_path):
    """The node's settings hold no database, broker or master key."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = (
        "import django; django.setup(); from django.conf import settings; "
        "from django.db import connection; "
        "print(settings.MASTER_KEY, settings.CELERY_BROKER_URL); "
        "connection.cursor()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "marketplace.settings",
             "MARKETPLACE_VALIDATOR_NODE": "1", "MARKETPLACE_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.stdout.startswith("None memory://")
    assert "ImproperlyConfigured" in result.stderr
    assert not (tmp_path / "master.key").exists()


def test_a_validator_never_signs_two_results_for_one_job(tmp_path):
    """What it signed is kept in its state folder, across restarts: a second, different result
    for the same job (which would let anyone slash it) is refused."""
    from validators.node import NodeConfig, Refused, ValidatorNode

    def node():
        return ValidatorNode(
            NodeConfig(
                private_key=dev_private_key(17), marketplace_url="http://127.0.0.1:9",
                rpc_url="http://127.0.0.1:9", state_dir=tmp_path / "state",
            )
        )  # fmt: skip

    first = node()
    first._remember("0x" + "ab" * 32, "0x" + "01" * 32, "0x" + "02" * 32)
    first._remember("0x" + "ab" * 32, "0x" + "01" * 32, "0x" + "02" * 32)  # the same again
    restarted = node()
    assert restarted.x25519_public == first.x25519_public  # the same key after a restart
    with pytest.raises(Refused, match="already attested another result"):
        restarted._remember("0x" + "ab" * 32, "0x" + "03" * 32, "0x" + "02" * 32)
    restarted._remember("0x" + "cd" * 32, "0x" + "03" * 32, "0x" + "02" * 32)  # another job
