"""The Python side of the contracts, end to end on anvil: gasless listing relayed by the operator,
a buyer funding a job from their own wallet, settlement on the validators' attestations,
withdrawal and refund."""

import os
import time

import pytest
from eth_account import Account
from web3.exceptions import ContractCustomError

from chain.attestations import payouts_hash, sign_attestation
from chain.client import decode_revert, deployed_addresses, get_web3
from chain.events import decode_receipt
from chain.wrappers import (
    DatasetRegistry,
    IdentityRegistry,
    JobState,
    JobTerms,
    ListingTerms,
    TrainingEscrow,
    ValidatorTerms,
)
from tests.chain.conftest import wallet_send

# anvil's well-known dev accounts 1 and 2 (test only).
OWNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
OWNER = Account.from_key(OWNER_KEY).address
BUYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

pytestmark = pytest.mark.django_db


def attest(
    escrow: TrainingEscrow, validators, job: JobTerms, amounts: list[int], report_hash: bytes
) -> list[bytes]:
    """The validators' attestations of the job's payouts and report, as each signs it."""
    payouts = payouts_hash(list(job.owners), amounts)
    return [
        sign_attestation(
            v.key,
            chain_id=escrow.w3.eth.chain_id,
            escrow=escrow.address,
            job_id=job.job_id,
            report_hash=report_hash,
            payouts_hash=payouts,
        )  # fmt: skip
        for v in validators
    ]


def list_dataset(registry: DatasetRegistry, price_wei: int, cid: str) -> int:
    terms = ListingTerms(
        owner=OWNER, cid=cid, content_hash=os.urandom(32), metadata_hash=os.urandom(32),
        license="CC-BY-4.0", price_wei=price_wei, parent_id=0, deadline=int(time.time()) + 3600,
    )  # fmt: skip
    signature = Account.sign_typed_data(
        OWNER_KEY, full_message=registry.listing_typed_data(terms)
    ).signature
    outcome = registry.relay_listing(intent=f"list:{cid}", terms=terms, signature=signature)
    return outcome.event("DatasetListed").args["listingId"]


def test_gasless_listing_is_recorded_for_the_signing_owner(contracts):
    registry = DatasetRegistry.deployed()
    terms = ListingTerms(
        owner=OWNER, cid="bafy-test-listing", content_hash=b"\x11" * 32, metadata_hash=b"\x22" * 32,
        license="MIT", price_wei=5 * 10**15, parent_id=0, deadline=int(time.time()) + 3600,
    )  # fmt: skip
    signature = Account.sign_typed_data(OWNER_KEY, full_message=registry.listing_typed_data(terms))
    nonce_before = registry.nonce(OWNER)

    outcome = registry.relay_listing(intent="list:one", terms=terms, signature=signature.signature)

    listed = outcome.event("DatasetListed")
    assert outcome.succeeded
    assert listed.args["owner"] == OWNER
    assert listed.args["cid"] == "bafy-test-listing"
    assert listed.args["contentHash"] == "0x" + "11" * 32
    assert listed.args["license"] == "MIT"
    listing = registry.listing(listed.args["listingId"])
    assert (listing.owner, listing.price_wei, listing.delisted) == (OWNER, 5 * 10**15, False)
    assert registry.nonce(OWNER) == nonce_before + 1


def test_a_listing_signed_by_another_key_is_refused_with_a_reason(contracts):
    registry = DatasetRegistry.deployed()
    terms = ListingTerms(
        owner=OWNER, cid="bafy-forged", content_hash=b"\x33" * 32, metadata_hash=b"\x44" * 32,
        license="MIT", price_wei=1, parent_id=0, deadline=int(time.time()) + 3600,
    )  # fmt: skip
    forged = Account.sign_typed_data(
        "0x" + "42" * 32, full_message=registry.listing_typed_data(terms)
    ).signature
    count_before = registry.listing_count()

    with pytest.raises(ContractCustomError) as raised:
        registry.relay_listing(intent="list:forged", terms=terms, signature=forged)

    assert decode_revert(raised.value)[0] == "InvalidSignature"
    assert registry.listing_count() == count_before


def test_fund_settle_withdraw_moves_exactly_the_escrowed_wei(contracts, dev_validators):
    w3 = get_web3()
    registry, escrow = DatasetRegistry.deployed(w3), TrainingEscrow.deployed(w3)
    dataset_id = list_dataset(registry, 2 * 10**16, "bafy-settle")
    job_id = os.urandom(32)

    pay = escrow.fund_request(job_id, [dataset_id])
    receipt = wallet_send(w3, BUYER, pay)

    quote = escrow.quote([dataset_id])
    assert pay.value_wei == quote.price_wei == 2 * 10**16 + escrow.fees().compute_fee_wei
    funded = [e for e in decode_receipt(w3, receipt, deployed_addresses()) if e.name == "JobFunded"]
    assert len(funded) == 1 and funded[0].args["datasetIds"] == [dataset_id]
    job = JobTerms.from_event(funded[0])
    assert (job.buyer, job.value_wei, job.fee_wei) == (BUYER, quote.price_wei, quote.fee_wei)
    assert escrow.job_state(job_id, buyer=BUYER) == JobState.FUNDED

    payout = job.value_wei - job.fee_wei
    assert job.dataset_ids == (dataset_id,) and job.owners == (OWNER,)
    # All three attest, in no particular order: settle sends them ordered by signer.
    by_address = sorted(dev_validators, key=lambda v: int(v.address, 16))
    signatures = attest(escrow, reversed(by_address), job, [payout], b"\x55" * 32)
    earned_before = [escrow.balance_of(v.address) for v in by_address]
    settled = escrow.settle(
        job=job, amounts=[payout], model_cid="bafy-model", report_hash=b"\x55" * 32,
        signatures=signatures,
    )  # fmt: skip
    again = escrow.settle(
        job=job, amounts=[payout], model_cid="bafy-model", report_hash=b"\x55" * 32,
        signatures=signatures,
    )  # fmt: skip

    assert again.tx_hash == settled.tx_hash  # the same intent is never sent twice
    assert settled.succeeded
    share = job.fee_wei * escrow.validator_terms().validator_fee_bps // 10_000 // 3
    credits = [e.args for e in settled.events if e.name == "PayeeCredited"]
    assert credits == [
        {"payee": OWNER, "jobId": "0x" + job_id.hex(), "amount": payout},
        *({"payee": v.address, "jobId": "0x" + job_id.hex(), "amount": share} for v in by_address),
    ]
    assert [escrow.balance_of(v.address) for v in by_address] == [e + share for e in earned_before]
    assert settled.event("JobSettled").args["modelCid"] == "bafy-model"
    assert settled.event("JobSettled").args["validators"] == [v.address for v in by_address]
    assert settled.event("JobSettled").args["fee"] == job.fee_wei - 3 * share
    assert escrow.job_state(job_id, buyer=BUYER) == JobState.SETTLED
    assert escrow.balance_of(OWNER) >= payout

    owed = escrow.balance_of(OWNER)
    before = w3.eth.get_balance(OWNER)
    receipt = wallet_send(w3, OWNER, escrow.withdraw_request())
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]

    assert w3.eth.get_balance(OWNER) == before + owed - gas_cost
    assert escrow.balance_of(OWNER) == 0


def test_operator_refund_credits_the_buyer_in_full(contracts):
    w3 = get_web3()
    registry, escrow = DatasetRegistry.deployed(w3), TrainingEscrow.deployed(w3)
    dataset_id = list_dataset(registry, 10**16, "bafy-refund")
    job_id = os.urandom(32)
    receipt = wallet_send(w3, BUYER, escrow.fund_request(job_id, [dataset_id]))
    job = JobTerms.from_event(decode_receipt(w3, receipt, deployed_addresses())[0])
    owed_before = escrow.balance_of(BUYER)

    outcome = escrow.refund(job=job)

    assert outcome.event("JobRefunded").args["value"] == job.value_wei
    assert escrow.balance_of(BUYER) == owed_before + job.value_wei
    assert escrow.job_state(job_id, buyer=BUYER) == JobState.REFUNDED


def test_identity_attribute_set_from_the_users_wallet_is_decoded(contracts):
    w3 = get_web3()
    identity = IdentityRegistry.deployed(w3)

    receipt = wallet_send(
        w3,
        OWNER,
        identity.set_attribute_request(
            OWNER, b"did/svc/MarketplaceProfile", b"https://m.example/p", 86400
        ),
    )

    events = decode_receipt(w3, receipt, deployed_addresses())
    assert [e.name for e in events] == ["DIDAttributeChanged"]
    assert events[0].args["identity"] == OWNER
    assert bytes.fromhex(events[0].args["value"][2:]) == b"https://m.example/p"
    assert identity.changed(OWNER) == receipt["blockNumber"]
    assert identity.identity_owner(OWNER) == OWNER


def test_listing_and_job_lineage_are_read_back_from_events(contracts, dev_validators):
    w3 = get_web3()
    registry, escrow = DatasetRegistry.deployed(w3), TrainingEscrow.deployed(w3)
    dataset_id = list_dataset(registry, 3 * 10**15, "bafy-lineage")
    job_id = os.urandom(32)
    receipt = wallet_send(w3, BUYER, escrow.fund_request(job_id, [dataset_id]))
    job = JobTerms.from_event(decode_receipt(w3, receipt, deployed_addresses())[0])
    amounts = [job.value_wei - job.fee_wei]
    escrow.settle(
        job=job, amounts=amounts, model_cid="bafy-lineage-model", report_hash=b"\x66" * 32,
        signatures=attest(escrow, dev_validators[:2], job, amounts, b"\x66" * 32),
    )  # fmt: skip

    listed = registry.listed_event(dataset_id)
    lineage = escrow.job_events(job_id)

    assert listed.args["cid"] == "bafy-lineage" and listed.args["owner"] == OWNER
    assert registry.listed_event(10**9) is None
    attesters = sorted(v.address for v in dev_validators[:2])
    assert [e.name for e in lineage] == ["JobFunded", *["PayeeCredited"] * 3, "JobSettled"]
    assert [e.args["payee"] for e in lineage[1:4]] == [OWNER, *attesters]
    assert lineage[0].args["datasetIds"] == [dataset_id]
    assert lineage[0].args["owners"] == [OWNER]
    assert lineage[4].args["buyer"] == BUYER
    assert lineage[4].args["modelCid"] == "bafy-lineage-model"
    assert lineage[4].args["reportHash"] == "0x" + "66" * 32
    assert lineage[4].args["validators"] == attesters


def test_the_keys_are_the_dev_accounts_after_the_users_and_hold_one_role_each(contracts):
    from chain.sender import signing_address

    escrow = TrainingEscrow.deployed()
    operator, admin = signing_address("operator"), signing_address("admin")
    accounts = get_web3().eth.accounts
    assert (operator, admin) == (accounts[10], accounts[11])
    operator_role = escrow.contract.functions.OPERATOR_ROLE().call()
    admin_role = escrow.contract.functions.DEFAULT_ADMIN_ROLE().call()
    assert escrow.contract.functions.hasRole(operator_role, operator).call() is True
    assert escrow.contract.functions.hasRole(admin_role, admin).call() is True
    assert escrow.contract.functions.hasRole(operator_role, admin).call() is False
    assert escrow.contract.functions.hasRole(admin_role, operator).call() is False
    assert escrow.contract.functions.hasRole(operator_role, accounts[0]).call() is False


def test_a_settlement_without_a_quorum_is_refused_with_a_reason(contracts, dev_validators):
    w3 = get_web3()
    registry, escrow = DatasetRegistry.deployed(w3), TrainingEscrow.deployed(w3)
    dataset_id = list_dataset(registry, 10**16, "bafy-no-quorum")
    receipt = wallet_send(w3, BUYER, escrow.fund_request(os.urandom(32), [dataset_id]))
    job = JobTerms.from_event(decode_receipt(w3, receipt, deployed_addresses())[0])
    amounts = [job.value_wei - job.fee_wei]

    with pytest.raises(ContractCustomError) as raised:
        escrow.settle(
            job=job, amounts=amounts, model_cid="bafy-model", report_hash=b"\x77" * 32,
            signatures=attest(escrow, dev_validators[:1], job, amounts, b"\x77" * 32),
        )  # fmt: skip

    assert decode_revert(raised.value) == ("QuorumNotReached", (1, escrow.validator_terms().quorum))
    assert escrow.job_state(job.job_id, buyer=BUYER) == JobState.FUNDED


def test_the_validator_terms_are_the_settings(contracts):
    from django.conf import settings

    assert TrainingEscrow.deployed().validator_terms() == ValidatorTerms(
        min_stake_wei=settings.ESCROW_MIN_STAKE_WEI,
        quorum=settings.ESCROW_QUORUM,
        validators_per_run=settings.ESCROW_VALIDATORS_PER_RUN,
        unbonding_delay_seconds=settings.ESCROW_UNBONDING_DELAY_SECONDS,
        validator_fee_bps=settings.ESCROW_VALIDATOR_FEE_BPS,
        slash_reward_bps=settings.ESCROW_SLASH_REWARD_BPS,
    )
