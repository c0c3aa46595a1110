"""TrainingEscrow's validators: staking, attested settlement (quorum, fee shares), the attestations
a settlement refuses, slashing an equivocation, unbonding, and the admin's validator terms."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from tests.contracts.conftest import (
    COMPUTE_FEE,
    FEE_BPS,
    MIN_STAKE,
    QUORUM,
    REPORT_HASH,
    SLASH_REWARD_BPS,
    UNBONDING_DELAY,
    VALIDATOR_FEE_BPS,
    VALIDATOR_TERMS,
    VALIDATORS_PER_RUN,
    Market,
    events,
    load_artifact,
)
from tests.contracts.signing import fresh_account, payouts_hash, sign_attestation

ETH = 10**18
ADMIN_ROLE = b"\x00" * 32
NONE, ACTIVE, LEAVING, REMOVED = 0, 1, 2, 3
MAX_UNBONDING_DELAY = 30 * 86400
OTHER_REPORT = keccak(text="another valuation report")
# _roles, EIP712's name and version, _config, then _settlement; _jobs, _balances, _validators.
SETTLEMENT_SLOT = 4
VALIDATORS_SLOT = 7


@pytest.fixture
def listed(market: Market) -> Market:
    """Listings 1 and 2 owned by alice and bob at 1 and 2 ETH; the dev validators staked."""
    market.list_dataset(market.actors.alice.address, ETH)
    market.list_dataset(market.actors.bob.address, 2 * ETH)
    return market


@pytest.fixture
def unstaked(deploy_market: Callable[..., Market]) -> Market:
    """The contracts with no validator staked yet."""
    return deploy_market(stake=False)


def funded(market: Market, label: str = "a") -> tuple[tuple, list[int]]:
    """A job over both listings and its payouts (each owner its price net of the fee share)."""
    _, job = market.fund(keccak(text=f"job {label}"), [1, 2])
    to_payees = job[2] - job[3]
    amounts = [to_payees // 3, to_payees - to_payees // 3]
    return job, amounts


def validator_word(market: Market, address: str) -> int:
    slot = keccak(bytes.fromhex(address[2:].rjust(64, "0")) + VALIDATORS_SLOT.to_bytes(32, "big"))
    return int.from_bytes(market.chain.w3.eth.get_storage_at(market.escrow.address, slot))


# --- staking


def test_a_stake_below_the_minimum_is_refused(unstaked: Market):
    escrow, chain = unstaked.escrow.functions, unstaked.chain
    validator = unstaked.validators[0].address
    chain.reverts(
        escrow.stake(), validator, "StakeTooLow", MIN_STAKE, MIN_STAKE - 1, value=MIN_STAKE - 1
    )
    chain.reverts(escrow.stake(), validator, "StakeTooLow", MIN_STAKE, 0)
    assert escrow.validatorOf(validator).call() == [0, NONE, 0]
    assert escrow.isValidator(validator).call() is False
    assert chain.balance(unstaked.escrow.address) == 0


def test_staking_makes_a_validator_in_one_slot(unstaked: Market):
    escrow = unstaked.escrow.functions
    validator = unstaked.validators[0].address

    receipt = unstaked.stake(validator, MIN_STAKE)

    assert events(unstaked.escrow, receipt, "Staked") == [
        {"validator": validator, "amount": MIN_STAKE, "stake": MIN_STAKE}
    ]
    assert escrow.validatorOf(validator).call() == [MIN_STAKE, ACTIVE, 0]
    assert escrow.stakeOf(validator).call() == MIN_STAKE
    assert escrow.isValidator(validator).call() is True
    assert escrow.balanceOf(validator).call() == 0  # a stake is not a withdrawable balance
    assert unstaked.chain.balance(unstaked.escrow.address) == MIN_STAKE
    # stake | earned << 96 | availableAt << 192 | status << 232
    assert validator_word(unstaked, validator) == MIN_STAKE | ACTIVE << 232

    # A top-up adds to the stake; any amount will do once the minimum is reached.
    receipt = unstaked.stake(validator, 5)
    assert events(unstaked.escrow, receipt, "Staked") == [
        {"validator": validator, "amount": 5, "stake": MIN_STAKE + 5}
    ]
    assert escrow.stakeOf(validator).call() == MIN_STAKE + 5


def test_a_stake_can_be_reached_in_steps_only_if_each_step_reaches_it(unstaked: Market):
    escrow, chain = unstaked.escrow.functions, unstaked.chain
    validator = unstaked.validators[1].address
    chain.reverts(escrow.stake(), validator, "StakeTooLow", MIN_STAKE, ETH // 2, value=ETH // 2)
    unstaked.stake(validator, MIN_STAKE)
    assert escrow.stakeOf(validator).call() == MIN_STAKE


def test_the_deployment_sets_the_validator_terms(market: Market):
    escrow = market.escrow.functions
    assert escrow.minStake().call() == MIN_STAKE
    assert escrow.unbondingDelay().call() == UNBONDING_DELAY
    assert escrow.quorum().call() == QUORUM
    assert escrow.validatorsPerRun().call() == VALIDATORS_PER_RUN
    assert escrow.validatorFeeBps().call() == VALIDATOR_FEE_BPS
    assert escrow.slashRewardBps().call() == SLASH_REWARD_BPS
    assert escrow.stakeBurned().call() == 0
    # What a settlement reads, in one slot with the fees it adds to: feesHeld | minStake << 112 |
    # quorum << 208 | validatorFeeBps << 216.
    slot = SETTLEMENT_SLOT
    word = int.from_bytes(market.chain.w3.eth.get_storage_at(market.escrow.address, slot))
    assert word == MIN_STAKE << 112 | QUORUM << 208 | VALIDATOR_FEE_BPS << 216


# --- attested settlement


def test_a_quorum_of_two_settles_and_credits_payees_and_validators(listed: Market):
    job, amounts = funded(listed)
    v1, v2, v3 = listed.validators
    escrow = listed.escrow.functions
    receipt = listed.chain.transact(
        listed.settle_call(job, amounts, signers=[v1, v3]), listed.actors.operator.address
    )

    share = job[3] * VALIDATOR_FEE_BPS // 10_000 // 2
    a = listed.actors
    assert [escrow.balanceOf(p).call() for p in (a.alice.address, a.bob.address)] == amounts
    assert escrow.balanceOf(v1.address).call() == share
    assert escrow.balanceOf(v3.address).call() == share
    assert escrow.balanceOf(v2.address).call() == 0
    assert escrow.feesHeld().call() == job[3] - 2 * share
    # The fee shares sit in the validators' own slots, next to their stakes.
    assert validator_word(listed, v1.address) == MIN_STAKE | share << 96 | ACTIVE << 232
    # ...and the fees kept next to the terms the settlement applied.
    settlement = int.from_bytes(
        listed.chain.w3.eth.get_storage_at(listed.escrow.address, SETTLEMENT_SLOT)
    )
    assert settlement == (
        job[3] - 2 * share | MIN_STAKE << 112 | QUORUM << 208 | VALIDATOR_FEE_BPS << 216
    )
    assert events(listed.escrow, receipt, "PayeeCredited")[2:] == [
        {"payee": v1.address, "jobId": job[0], "amount": share},
        {"payee": v3.address, "jobId": job[0], "amount": share},
    ]
    settled = events(listed.escrow, receipt, "JobSettled")[0]
    assert settled["validators"] == [v1.address, v3.address]
    assert settled["fee"] == job[3] - 2 * share
    assert settled["reportHash"] == REPORT_HASH
    # Everything credited plus what the marketplace keeps is exactly the job's value.
    credited = sum(e["amount"] for e in events(listed.escrow, receipt, "PayeeCredited"))
    assert credited + settled["fee"] == job[2]


def test_three_attesters_share_the_fee_and_the_rounding_stays_with_the_marketplace(
    listed: Market,
):
    # A price whose fee does not split evenly in three.
    price = next(
        p
        for p in range(ETH, ETH + 1000)
        if (COMPUTE_FEE + p * FEE_BPS // 10_000) * VALIDATOR_FEE_BPS // 10_000 % 3
    )
    listed.chain.transact(listed.registry.functions.setPrice(1, price), listed.actors.alice.address)
    job, amounts = funded(listed)
    listed.chain.transact(
        listed.settle_call(job, amounts, signers=listed.validators),
        listed.actors.operator.address,
    )
    validators_fee = job[3] * VALIDATOR_FEE_BPS // 10_000
    share = validators_fee // 3
    assert validators_fee % 3 != 0  # the case of a remainder
    escrow = listed.escrow.functions
    assert [escrow.balanceOf(v.address).call() for v in listed.validators] == [share] * 3
    assert escrow.feesHeld().call() == job[3] - 3 * share


def test_withdraw_pays_an_owner_its_payout_and_a_validator_its_fee_share(listed: Market):
    job, amounts = funded(listed)
    listed.chain.transact(listed.settle_call(job, amounts), listed.actors.operator.address)
    share = listed.validator_share(job)
    escrow = listed.escrow.functions
    for account, owed in (
        (listed.actors.alice.address, amounts[0]),
        (listed.validators[0].address, share),
    ):
        before = listed.chain.balance(account)
        receipt = listed.chain.transact(escrow.withdraw(), account)
        gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert listed.chain.balance(account) == before + owed - gas_cost
        assert events(listed.escrow, receipt, "Withdrawn") == [{"account": account, "amount": owed}]
        assert escrow.balanceOf(account).call() == 0
        listed.chain.reverts(escrow.withdraw(), account, "NothingToWithdraw")
    # The validator's stake is untouched by the withdrawal of its fees.
    assert escrow.validatorOf(listed.validators[0].address).call() == [MIN_STAKE, ACTIVE, 0]


def test_a_validator_that_is_also_a_payee_withdraws_both_at_once(unstaked: Market):
    validator = unstaked.validators[0]
    unstaked.list_dataset(validator.address, ETH)
    for v in unstaked.validators:
        unstaked.stake(v.address)
    _, job = unstaked.fund(keccak(text="job self"), [1])
    amounts = [job[2] - job[3]]
    unstaked.chain.transact(unstaked.settle_call(job, amounts), unstaked.actors.operator.address)
    owed = amounts[0] + unstaked.validator_share(job)
    assert unstaked.escrow.functions.balanceOf(validator.address).call() == owed
    receipt = unstaked.chain.transact(unstaked.escrow.functions.withdraw(), validator.address)
    assert events(unstaked.escrow, receipt, "Withdrawn") == [
        {"account": validator.address, "amount": owed}
    ]


# --- attestations a settlement refuses (each leaves the job funded)


def assert_refused(
    market: Market, job: tuple, amounts: list[int], signatures: list[bytes], error: str, *args
) -> None:
    call = market.escrow.functions.settle(job, amounts, "bafymodel", REPORT_HASH, signatures)
    market.chain.reverts(call, market.actors.operator.address, error, *args)
    assert market.escrow.functions.jobState(job[1], job[0]).call() == 1
    assert market.escrow.functions.feesHeld().call() == 0


def test_payouts_other_than_those_attested_are_refused(listed: Market):
    job, amounts = funded(listed)
    v1, v2, _ = listed.validators
    signatures = [listed.attest(v, job, amounts) for v in (v1, v2)]
    moved = [amounts[0] + 1, amounts[1] - 1]  # the same total: only the attestations tell
    assert_refused(listed, job, moved, signatures, "NotAValidator")


def test_an_unstaked_keys_attestation_is_refused(listed: Market):
    job, amounts = funded(listed)
    outsider = fresh_account("not a validator")
    signers = sorted([listed.validators[0], outsider], key=lambda a: int(a.address, 16))
    signatures = [listed.attest(s, job, amounts) for s in signers]
    assert_refused(listed, job, amounts, signatures, "NotAValidator", outsider.address)


def test_two_attestations_of_one_validator_count_once(listed: Market):
    job, amounts = funded(listed)
    v1 = listed.validators[0]
    signature = listed.attest(v1, job, amounts)
    assert_refused(listed, job, amounts, [signature, signature], "DuplicateAttester", v1.address)


def test_attestations_out_of_order_are_refused(listed: Market):
    job, amounts = funded(listed)
    v1, v2, _ = listed.validators
    signatures = [listed.attest(v, job, amounts) for v in (v2, v1)]
    assert_refused(listed, job, amounts, signatures, "AttestersNotSorted")


def test_attestations_for_another_job_are_refused(listed: Market):
    job, amounts = funded(listed, "a")
    other, _ = funded(listed, "b")
    signatures = [listed.attest(v, other, amounts) for v in listed.validators[:2]]
    assert_refused(listed, job, amounts, signatures, "NotAValidator")


def test_attestations_of_another_report_are_refused(listed: Market):
    job, amounts = funded(listed)
    signatures = [listed.attest(v, job, amounts, OTHER_REPORT) for v in listed.validators[:2]]
    assert_refused(listed, job, amounts, signatures, "NotAValidator")


def test_attestations_for_another_escrow_or_chain_are_refused(listed: Market):
    job, amounts = funded(listed)
    payouts = payouts_hash(job[6], amounts)
    elsewhere = [
        sign_attestation(v, listed.registry.address, job[0], REPORT_HASH, payouts)
        for v in listed.validators[:2]
    ]
    assert_refused(listed, job, amounts, elsewhere, "NotAValidator")
    other_chain = [
        sign_attestation(v, listed.escrow.address, job[0], REPORT_HASH, payouts, chain_id=1)
        for v in listed.validators[:2]
    ]
    assert_refused(listed, job, amounts, other_chain, "NotAValidator")


def test_too_few_attestations_are_refused(listed: Market):
    job, amounts = funded(listed)
    one = [listed.attest(listed.validators[0], job, amounts)]
    assert_refused(listed, job, amounts, one, "QuorumNotReached", 1, QUORUM)
    assert_refused(listed, job, amounts, [], "QuorumNotReached", 0, QUORUM)


def test_a_malformed_signature_is_no_ones(listed: Market):
    job, amounts = funded(listed)
    v1, v2, _ = listed.validators
    good = listed.attest(v1, job, amounts)
    zero = "0x" + "00" * 20
    assert_refused(
        listed, job, amounts, [good, listed.attest(v2, job, amounts)[:64]], "NotAValidator", zero
    )
    assert_refused(listed, job, amounts, [good, b"\x00" * 65], "NotAValidator", zero)


def test_a_removed_validators_attestation_is_refused(listed: Market):
    job, amounts = funded(listed)
    v1, v2, v3 = listed.validators
    slash(listed, v1, job[0])
    signatures = [listed.attest(v, job, amounts) for v in (v1, v2)]
    assert_refused(listed, job, amounts, signatures, "NotAValidator", v1.address)
    # The other two still make a quorum.
    listed.chain.transact(
        listed.settle_call(job, amounts, signers=[v2, v3]), listed.actors.operator.address
    )


def test_a_stake_below_a_raised_minimum_stops_counting_until_topped_up(listed: Market):
    job, amounts = funded(listed)
    v1, v2, _ = listed.validators
    admin = listed.actors.admin.address
    raised = (2 * MIN_STAKE, *VALIDATOR_TERMS[1:])
    listed.chain.transact(listed.escrow.functions.setValidatorTerms(*raised), admin)
    assert listed.escrow.functions.isValidator(v1.address).call() is False
    signatures = [listed.attest(v, job, amounts) for v in (v1, v2)]
    assert_refused(listed, job, amounts, signatures, "NotAValidator", v1.address)

    for v in (v1, v2):
        listed.stake(v.address, MIN_STAKE)
    listed.chain.transact(listed.settle_call(job, amounts), listed.actors.operator.address)


# --- slashing an equivocation


def slash(market: Market, validator: LocalAccount, job_id: bytes, reporter: str | None = None):
    """`validator` attests two different reports for `job_id`; `reporter` slashes it."""
    payouts = keccak(text="payouts")
    a = sign_attestation(validator, market.escrow.address, job_id, REPORT_HASH, payouts)
    b = sign_attestation(validator, market.escrow.address, job_id, OTHER_REPORT, payouts)
    call = market.escrow.functions.slash(job_id, REPORT_HASH, payouts, a, OTHER_REPORT, payouts, b)
    receipt = market.chain.transact(call, reporter or market.actors.stranger.address)
    return receipt


def test_an_equivocating_validator_is_slashed_and_removed(listed: Market):
    v1 = listed.validators[0]
    reporter = listed.actors.stranger.address
    escrow = listed.escrow.functions
    job_id = keccak(text="job a")
    held_before = listed.chain.balance(listed.escrow.address)

    receipt = slash(listed, v1, job_id, reporter)

    reward = MIN_STAKE * SLASH_REWARD_BPS // 10_000
    burned = MIN_STAKE - reward
    assert events(listed.escrow, receipt, "Slashed") == [
        {
            "validator": v1.address,
            "jobId": job_id,
            "reporter": reporter,
            "reward": reward,
            "burned": burned,
        }
    ]
    assert escrow.balanceOf(reporter).call() == reward
    assert escrow.stakeBurned().call() == burned
    assert escrow.validatorOf(v1.address).call() == [0, REMOVED, 0]
    assert escrow.isValidator(v1.address).call() is False
    assert listed.chain.balance(listed.escrow.address) == held_before  # nothing left the escrow
    listed.chain.reverts(escrow.stake(), v1.address, "ValidatorRemoved", value=MIN_STAKE)
    listed.chain.reverts(escrow.requestUnstake(), v1.address, "ValidatorRemoved")
    listed.chain.reverts(escrow.withdrawStake(), v1.address, "ValidatorRemoved")

    # The reporter withdraws its reward; the burned part stays locked.
    before = listed.chain.balance(reporter)
    receipt = listed.chain.transact(escrow.withdraw(), reporter)
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert listed.chain.balance(reporter) == before + reward - gas_cost
    assert listed.chain.balance(listed.escrow.address) == held_before - reward


def test_a_validator_is_slashed_once(listed: Market):
    v1 = listed.validators[0]
    slash(listed, v1, keccak(text="job a"))
    payouts = keccak(text="payouts")
    a = sign_attestation(v1, listed.escrow.address, keccak(text="job b"), REPORT_HASH, payouts)
    b = sign_attestation(v1, listed.escrow.address, keccak(text="job b"), OTHER_REPORT, payouts)
    listed.chain.reverts(
        listed.escrow.functions.slash(
            keccak(text="job b"), REPORT_HASH, payouts, a, OTHER_REPORT, payouts, b
        ),
        listed.actors.stranger.address,
        "NothingToSlash",
        v1.address,
    )
    assert listed.escrow.functions.stakeBurned().call() == MIN_STAKE - MIN_STAKE // 2


def test_a_slashed_validator_keeps_the_fees_it_earned(listed: Market):
    job, amounts = funded(listed)
    listed.chain.transact(listed.settle_call(job, amounts), listed.actors.operator.address)
    v1 = listed.validators[0]
    slash(listed, v1, job[0])
    share = listed.validator_share(job)
    assert listed.escrow.functions.balanceOf(v1.address).call() == share
    receipt = listed.chain.transact(listed.escrow.functions.withdraw(), v1.address)
    assert events(listed.escrow, receipt, "Withdrawn")[0]["amount"] == share


def test_payouts_differing_alone_are_an_equivocation(listed: Market):
    v2 = listed.validators[1]
    job_id, escrow = keccak(text="job a"), listed.escrow.address
    a = sign_attestation(v2, escrow, job_id, REPORT_HASH, keccak(text="payouts 1"))
    b = sign_attestation(v2, escrow, job_id, REPORT_HASH, keccak(text="payouts 2"))
    listed.chain.transact(
        listed.escrow.functions.slash(
            job_id,
            REPORT_HASH,
            keccak(text="payouts 1"),
            a,
            REPORT_HASH,
            keccak(text="payouts 2"),
            b,
        ),
        listed.actors.stranger.address,
    )
    assert listed.escrow.functions.validatorOf(v2.address).call()[1] == REMOVED


def test_the_same_attestation_twice_is_not_an_equivocation(listed: Market):
    v1 = listed.validators[0]
    job_id, payouts = keccak(text="job a"), keccak(text="payouts")
    a = sign_attestation(v1, listed.escrow.address, job_id, REPORT_HASH, payouts)
    listed.chain.reverts(
        listed.escrow.functions.slash(job_id, REPORT_HASH, payouts, a, REPORT_HASH, payouts, a),
        listed.actors.stranger.address,
        "NotConflicting",
    )
    assert listed.escrow.functions.validatorOf(v1.address).call() == [MIN_STAKE, ACTIVE, 0]


def test_attestations_of_two_validators_are_not_an_equivocation(listed: Market):
    v1, v2, _ = listed.validators
    job_id, payouts = keccak(text="job a"), keccak(text="payouts")
    a = sign_attestation(v1, listed.escrow.address, job_id, REPORT_HASH, payouts)
    b = sign_attestation(v2, listed.escrow.address, job_id, OTHER_REPORT, payouts)
    listed.chain.reverts(
        listed.escrow.functions.slash(job_id, REPORT_HASH, payouts, a, OTHER_REPORT, payouts, b),
        listed.actors.stranger.address,
        "NotSameSigner",
        v1.address,
        v2.address,
    )
    # Nor are attestations of two jobs: checked against one job, the second recovers to no one's.
    c = sign_attestation(v1, listed.escrow.address, keccak(text="job b"), OTHER_REPORT, payouts)
    call = listed.escrow.functions.slash(job_id, REPORT_HASH, payouts, a, OTHER_REPORT, payouts, c)
    listed.chain.reverts(call, listed.actors.stranger.address, "NotSameSigner")
    assert listed.escrow.functions.validatorOf(v1.address).call() == [MIN_STAKE, ACTIVE, 0]


def test_an_equivocation_of_a_key_without_stake_slashes_nothing(listed: Market):
    outsider = fresh_account("equivocating outsider")
    job_id, payouts = keccak(text="job a"), keccak(text="payouts")
    a = sign_attestation(outsider, listed.escrow.address, job_id, REPORT_HASH, payouts)
    b = sign_attestation(outsider, listed.escrow.address, job_id, OTHER_REPORT, payouts)
    listed.chain.reverts(
        listed.escrow.functions.slash(job_id, REPORT_HASH, payouts, a, OTHER_REPORT, payouts, b),
        listed.actors.stranger.address,
        "NothingToSlash",
        outsider.address,
    )


# --- unbonding


def test_a_stake_is_withdrawn_only_after_the_unbonding_delay(listed: Market):
    v1 = listed.validators[0].address
    escrow, chain = listed.escrow.functions, listed.chain
    chain.reverts(escrow.withdrawStake(), v1, "UnstakeNotRequested")

    receipt = chain.transact(escrow.requestUnstake(), v1)

    requested_at = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    available_at = requested_at + UNBONDING_DELAY
    assert events(listed.escrow, receipt, "UnstakeRequested") == [
        {"validator": v1, "availableAt": available_at}
    ]
    assert escrow.validatorOf(v1).call() == [MIN_STAKE, LEAVING, available_at]
    assert escrow.isValidator(v1).call() is True  # until it withdraws
    chain.reverts(escrow.requestUnstake(), v1, "UnstakePending")
    chain.reverts(escrow.stake(), v1, "UnstakePending", value=MIN_STAKE)
    chain.reverts(escrow.withdrawStake(), v1, "UnbondingNotOver", available_at)
    chain.mine_at(available_at - 2)
    chain.reverts(escrow.withdrawStake(), v1, "UnbondingNotOver", available_at)

    chain.mine_at(available_at)
    before, held = chain.balance(v1), chain.balance(listed.escrow.address)
    receipt = chain.transact(escrow.withdrawStake(), v1)

    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(v1) == before + MIN_STAKE - gas_cost
    assert chain.balance(listed.escrow.address) == held - MIN_STAKE
    assert events(listed.escrow, receipt, "StakeWithdrawn") == [
        {"validator": v1, "amount": MIN_STAKE}
    ]
    assert escrow.validatorOf(v1).call() == [0, NONE, 0]
    assert escrow.isValidator(v1).call() is False
    assert validator_word(listed, v1) == 0
    chain.reverts(escrow.withdrawStake(), v1, "UnstakeNotRequested")
    # It may come back.
    listed.stake(v1, MIN_STAKE)
    assert escrow.validatorOf(v1).call() == [MIN_STAKE, ACTIVE, 0]


def test_only_a_validator_can_request_to_unstake(unstaked: Market):
    stranger = unstaked.actors.stranger.address
    unstaked.chain.reverts(unstaked.escrow.functions.requestUnstake(), stranger, "NotStaked")


def test_a_leaving_validators_attestations_still_count(listed: Market):
    job, amounts = funded(listed)
    v1 = listed.validators[0]
    listed.chain.transact(listed.escrow.functions.requestUnstake(), v1.address)
    listed.chain.transact(listed.settle_call(job, amounts), listed.actors.operator.address)
    assert listed.escrow.functions.balanceOf(v1.address).call() == listed.validator_share(job)


def test_a_leaving_validator_can_still_be_slashed(listed: Market):
    v1 = listed.validators[0]
    escrow = listed.escrow.functions
    listed.chain.transact(escrow.requestUnstake(), v1.address)
    listed.chain.increase_time(UNBONDING_DELAY - 60)

    slash(listed, v1, keccak(text="job a"))

    assert escrow.validatorOf(v1.address).call() == [0, REMOVED, 0]
    listed.chain.increase_time(120)
    listed.chain.reverts(escrow.withdrawStake(), v1.address, "ValidatorRemoved")
    assert escrow.stakeBurned().call() == MIN_STAKE - MIN_STAKE * SLASH_REWARD_BPS // 10_000


def test_a_withdrawn_validator_cannot_attest(listed: Market):
    job, amounts = funded(listed)
    v1, v2, _ = listed.validators
    listed.chain.transact(listed.escrow.functions.requestUnstake(), v1.address)
    listed.chain.increase_time(UNBONDING_DELAY)
    listed.chain.transact(listed.escrow.functions.withdrawStake(), v1.address)
    signatures = [listed.attest(v, job, amounts) for v in (v1, v2)]
    assert_refused(listed, job, amounts, signatures, "NotAValidator", v1.address)


SWALLOW, BUBBLE = 0, 1


def test_a_reentrant_stake_withdrawal_pays_once(unstaked: Market):
    stranger = unstaked.actors.stranger.address
    attacker = unstaked.chain.deploy("ReentrantWithdrawer", unstaked.escrow.address)
    unstaked.chain.transact(attacker.functions.stake(), stranger, MIN_STAKE)
    unstaked.chain.transact(attacker.functions.requestUnstake(), stranger)
    unstaked.chain.increase_time(UNBONDING_DELAY)

    # Its re-entry fails on the guard, which fails the payment, which reverts the withdrawal...
    unstaked.chain.transact(attacker.functions.setMode(BUBBLE), stranger)
    unstaked.chain.reverts(
        attacker.functions.attackStake(), stranger, "WithdrawFailed", abi=unstaked.escrow.abi
    )
    assert unstaked.escrow.functions.stakeOf(attacker.address).call() == MIN_STAKE
    # ...or, swallowed, leaves it paid once.
    unstaked.chain.transact(attacker.functions.setMode(SWALLOW), stranger)
    unstaked.chain.transact(attacker.functions.attackStake(), stranger)

    assert attacker.functions.reentrySucceeded().call() is False
    assert (
        attacker.functions.lastReentryError().call()
        == keccak(text="ReentrancyGuardReentrantCall()")[:4]
    )
    assert unstaked.chain.balance(attacker.address) == MIN_STAKE
    assert unstaked.chain.balance(unstaked.escrow.address) == 0


# --- the admin's validator terms


def test_the_admin_sets_the_validator_terms(market: Market):
    admin = market.actors.admin.address
    escrow = market.escrow.functions
    terms = (5 * ETH, 86400, 3, 5, 10_000, 0)
    receipt = market.chain.transact(escrow.setValidatorTerms(*terms), admin)
    assert events(market.escrow, receipt, "ValidatorTermsChanged") == [
        {
            "minStake": 5 * ETH,
            "unbondingDelay": 86400,
            "quorum": 3,
            "validatorsPerRun": 5,
            "validatorFeeBps": 10_000,
            "slashRewardBps": 0,
        }
    ]
    assert [
        escrow.minStake().call(),
        escrow.unbondingDelay().call(),
        escrow.quorum().call(),
        escrow.validatorsPerRun().call(),
        escrow.validatorFeeBps().call(),
        escrow.slashRewardBps().call(),
    ] == list(terms)
    # The bounds themselves are allowed.
    market.chain.transact(
        escrow.setValidatorTerms(2**96 - 1, MAX_UNBONDING_DELAY, 1, 1, 0, 10_000), admin
    )
    market.chain.transact(escrow.setValidatorTerms(1, 0, 255, 255, 0, 0), admin)


BAD_TERMS = [
    ((0, *VALIDATOR_TERMS[1:]), "MinStakeOutOfRange", (0,)),
    ((2**96, *VALIDATOR_TERMS[1:]), "MinStakeOutOfRange", (2**96,)),
    ((MIN_STAKE, MAX_UNBONDING_DELAY + 1, *VALIDATOR_TERMS[2:]), "UnbondingDelayTooLong",
     (MAX_UNBONDING_DELAY + 1,)),
    ((MIN_STAKE, 2**63, *VALIDATOR_TERMS[2:]), "UnbondingDelayTooLong", (2**63,)),
    ((MIN_STAKE, UNBONDING_DELAY, 0, 3, 3000, 5000), "QuorumOutOfRange", (0, 3)),
    ((MIN_STAKE, UNBONDING_DELAY, 4, 3, 3000, 5000), "QuorumOutOfRange", (4, 3)),
    ((MIN_STAKE, UNBONDING_DELAY, 1, 0, 3000, 5000), "QuorumOutOfRange", (1, 0)),
    ((MIN_STAKE, UNBONDING_DELAY, 2, 3, 10_001, 5000), "ValidatorFeeBpsTooHigh", (10_001,)),
    ((MIN_STAKE, UNBONDING_DELAY, 2, 3, 3000, 10_001), "SlashRewardBpsTooHigh", (10_001,)),
    ((MIN_STAKE, UNBONDING_DELAY, 2, 3, 3000, 65_535), "SlashRewardBpsTooHigh", (65_535,)),
]  # fmt: skip


@pytest.mark.parametrize(("terms", "error", "error_args"), BAD_TERMS)
def test_validator_terms_out_of_bounds_are_refused(market: Market, terms, error, error_args):
    admin = market.actors.admin.address
    market.chain.reverts(
        market.escrow.functions.setValidatorTerms(*terms), admin, error, *error_args
    )
    assert market.escrow.functions.quorum().call() == QUORUM


@pytest.mark.parametrize(("terms", "error", "error_args"), BAD_TERMS[::3])
def test_the_constructor_refuses_validator_terms_out_of_bounds(
    market: Market, terms, error, error_args
):
    artifact = load_artifact("TrainingEscrow")
    factory = market.chain.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    a = market.actors
    market.chain.reverts(
        factory.constructor(
            market.registry.address, a.admin.address, a.operator.address, 0, 0, 86400, terms
        ),
        a.admin.address,
        error,
        *error_args,
        abi=artifact["abi"],
    )


def test_only_the_admin_sets_the_validator_terms(market: Market):
    for caller in (market.actors.operator.address, market.validators[0].address):
        market.chain.reverts(
            market.escrow.functions.setValidatorTerms(*VALIDATOR_TERMS),
            caller,
            "AccessControlUnauthorizedAccount",
            caller,
            ADMIN_ROLE,
        )


def test_a_lowered_quorum_applies_to_the_next_settlement(listed: Market):
    job, amounts = funded(listed)
    one = [listed.attest(listed.validators[0], job, amounts)]
    assert_refused(listed, job, amounts, one, "QuorumNotReached", 1, 2)
    lowered = (MIN_STAKE, UNBONDING_DELAY, 1, 3, VALIDATOR_FEE_BPS, SLASH_REWARD_BPS)
    listed.chain.transact(
        listed.escrow.functions.setValidatorTerms(*lowered), listed.actors.admin.address
    )
    listed.chain.transact(
        listed.escrow.functions.settle(job, amounts, "bafymodel", REPORT_HASH, one),
        listed.actors.operator.address,
    )
    share = job[3] * VALIDATOR_FEE_BPS // 10_000
    assert listed.escrow.functions.balanceOf(listed.validators[0].address).call() == share


def test_validator_addresses_are_the_dev_accounts_after_the_marketplaces(validators, w3: Web3):
    assert sorted(v.address for v in validators) == sorted(w3.eth.accounts[12:15])
