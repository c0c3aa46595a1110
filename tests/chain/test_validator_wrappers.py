"""The escrow wrapper as a validator node uses it: built with `TrainingEscrow.at` on an address,
without the marketplace database (these tests have no database access, so any query fails them):
staking, unbonding, job events with attesters, slashing an equivocation, from the wallet's own
transaction requests."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3

from chain.attestations import payouts_hash, recover_attester, sign_attestation
from chain.client import load_artifact, web3_for
from chain.wrappers import (
    Attestation,
    JobTerms,
    TrainingEscrow,
    ValidatorStatus,
    ValidatorTerms,
)
from marketplace.devstack import dev_private_key
from tests.chain.conftest import DEV_VALIDATOR_ACCOUNTS, wallet_send

MIN_STAKE = 10**18
# No unbonding delay, so that this escrow's validators leave without moving the session's clock.
TERMS = ValidatorTerms(
    min_stake_wei=MIN_STAKE,
    quorum=2,
    validators_per_run=3,
    unbonding_delay_seconds=0,
    validator_fee_bps=3_000,
    slash_reward_bps=5_000,
)
REPORT = b"\x42" * 32


def deploy(w3: Web3, name: str, *args) -> tuple[str, int]:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": w3.eth.accounts[11]})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return receipt["contractAddress"], receipt["blockNumber"]


@pytest.fixture
def node(anvil):
    """A registry and an escrow of their own on the session's anvil, and the escrow's wrapper as
    a validator node builds it (its address and deployment block, no database)."""
    w3 = web3_for(anvil.url)
    accounts = w3.eth.accounts
    registry_address, _ = deploy(w3, "DatasetRegistry")
    escrow_address, block = deploy(
        w3, "TrainingEscrow", registry_address, accounts[11], accounts[10], 10**15, 500, 86400,
        TERMS.as_tuple(),
    )  # fmt: skip
    escrow = TrainingEscrow.at(w3, escrow_address, from_block=block)
    registry = w3.eth.contract(
        address=registry_address, abi=load_artifact("DatasetRegistry")["abi"]
    )
    validators = sorted(
        (Account.from_key(dev_private_key(i)) for i in DEV_VALIDATOR_ACCOUNTS),
        key=lambda v: int(v.address, 16),
    )
    return w3, escrow, registry, validators


def test_a_validator_stakes_leaves_and_comes_back_from_its_wallet(node):
    w3, escrow, _, validators = node
    validator = validators[0].address
    assert escrow.validator_terms() == TERMS
    assert escrow.validator_of(validator).status == ValidatorStatus.NONE

    request = escrow.stake_request(MIN_STAKE)
    assert (request.chain_id, request.to, request.value_wei) == (31337, escrow.address, MIN_STAKE)
    wallet_send(w3, validator, request)

    state = escrow.validator_of(validator)
    assert (state.address, state.stake_wei, state.status) == (
        validator,
        MIN_STAKE,
        ValidatorStatus.ACTIVE,
    )
    assert escrow.is_validator(validator) is True

    receipt = wallet_send(w3, validator, escrow.request_unstake_request())
    leaving = escrow.validator_of(validator)
    assert leaving.status == ValidatorStatus.LEAVING
    assert leaving.available_at == w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert escrow.is_validator(validator) is True  # until it withdraws

    before = w3.eth.get_balance(validator)
    receipt = wallet_send(w3, validator, escrow.withdraw_stake_request())
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(validator) == before + MIN_STAKE - gas_cost
    assert escrow.validator_of(validator).status == ValidatorStatus.NONE
    assert escrow.is_validator(validator) is False


def fund_and_settle(node) -> tuple[JobTerms, list[int]]:
    """A job over one dataset of a user, settled on the validators' attestations."""
    w3, escrow, registry, validators = node
    owner, buyer, operator = w3.eth.accounts[1], w3.eth.accounts[2], w3.eth.accounts[10]
    for validator in validators:
        wallet_send(w3, validator.address, escrow.stake_request(MIN_STAKE))
    tx = registry.functions.list("bafy-node", REPORT, REPORT, "MIT", 10**16, 0).transact(
        {"from": owner}
    )
    w3.eth.wait_for_transaction_receipt(tx)
    job_id = Web3.keccak(text=f"node job {escrow.address}")
    wallet_send(w3, buyer, escrow.fund_request(job_id, [1]))
    job = JobTerms.from_event(escrow.job_events(job_id)[0])
    amounts = [job.value_wei - job.fee_wei]
    payouts = payouts_hash(list(job.owners), amounts)
    signatures = [
        sign_attestation(
            v.key,
            chain_id=31337,
            escrow=escrow.address,
            job_id=job_id,
            report_hash=REPORT,
            payouts_hash=payouts,
        )  # fmt: skip
        for v in validators[:2]
    ]
    # The operator settles (anvil signs for its dev account 10).
    tx = escrow.contract.functions.settle(
        job.as_tuple(), amounts, "bafy-model", REPORT, signatures
    ).transact({"from": operator})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    return job, amounts


def test_a_jobs_events_name_its_attesters_without_the_database(node):
    w3, escrow, _, validators = node
    job, amounts = fund_and_settle(node)

    events = escrow.job_events(job.job_id)

    attesters = [v.address for v in validators[:2]]
    assert [e.name for e in events] == ["JobFunded", *["PayeeCredited"] * 3, "JobSettled"]
    assert [e.args["payee"] for e in events[1:4]] == [job.owners[0], *attesters]
    assert events[4].args["validators"] == attesters
    share = job.fee_wei * TERMS.validator_fee_bps // 10_000 // 2
    assert [escrow.balance_of(a) for a in attesters] == [share, share]
    # Event reads take a block range.
    funded_block = events[0].block_number
    assert escrow._events("JobFunded", to_block=funded_block - 1, jobId=job.job_id) == []
    assert [
        e.name for e in escrow._events("JobSettled", from_block=funded_block, jobId=job.job_id)
    ] == ["JobSettled"]


def test_anyone_slashes_a_validator_that_attested_two_results(node):
    w3, escrow, _, validators = node
    job, amounts = fund_and_settle(node)
    cheat, reporter = validators[1], w3.eth.accounts[3]
    honest_payouts = payouts_hash(list(job.owners), amounts)
    other_report = b"\x43" * 32

    def signed(report_hash: bytes) -> Attestation:
        signature = sign_attestation(
            cheat.key, chain_id=31337, escrow=escrow.address, job_id=job.job_id,
            report_hash=report_hash, payouts_hash=honest_payouts,
        )  # fmt: skip
        assert (
            recover_attester(
                signature,
                chain_id=31337,
                escrow=escrow.address,
                job_id=job.job_id,
                report_hash=report_hash,
                payouts_hash=honest_payouts,
            )  # fmt: skip
            == cheat.address
        )
        return Attestation(report_hash, honest_payouts, signature)

    first, second = signed(REPORT), signed(other_report)
    receipt = wallet_send(w3, reporter, escrow.slash_request(job.job_id, first, tuple(second)))

    assert receipt["status"] == 1
    reward = MIN_STAKE * TERMS.slash_reward_bps // 10_000
    assert escrow.stake_burned() == MIN_STAKE - reward
    assert escrow.balance_of(reporter) == reward
    state = escrow.validator_of(cheat.address)
    assert (state.stake_wei, state.status) == (0, ValidatorStatus.REMOVED)
    assert escrow.is_validator(cheat.address) is False
    slashed = [e for e in escrow.job_events(job.job_id) if e.name == "Slashed"]
    assert [(e.args["validator"], e.args["reporter"], e.args["reward"]) for e in slashed] == [
        (cheat.address, reporter, reward)
    ]


def test_the_wrapper_at_an_address_asks_its_node_for_the_chain_id(node):
    _, escrow, _, _ = node
    assert escrow.withdraw_request().chain_id == 31337
    assert escrow.request_unstake_request().data == escrow.contract.encode_abi("requestUnstake")
