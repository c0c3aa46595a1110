"""TrainingEscrow: quote, fund, settle, refund, pull withdrawals, fees, roles, reentrancy, and
the attacks v2 closes (a stranger funding a buyer's job id, a payee outside the job). Every
settlement here is attested by a quorum of the dev validators; tests/contracts/test_validators.py
covers staking, attestations and slashing."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from web3 import Web3

from tests.contracts.conftest import (
    COMPUTE_FEE,
    FEE_BPS,
    MODEL_CID,
    REFUND_DELAY,
    REPORT_HASH,
    VALIDATOR_TERMS,
    Market,
    events,
    job_terms,
    load_artifact,
)

ETH = 10**18
PRICES = (ETH, 2 * ETH, 3 * ETH)
OPERATOR_ROLE = Web3.keccak(text="OPERATOR_ROLE")
ADMIN_ROLE = b"\x00" * 32
NONE, FUNDED, SETTLED, REFUNDED = 0, 1, 2, 3
MAX_FEE_BPS = 2_000
MAX_REFUND_DELAY = 30 * 86400


def job_id(label: str) -> bytes:
    return keccak(text=f"job {label}")


def expected_quote(total: int, compute_fee: int = COMPUTE_FEE, bps: int = FEE_BPS):
    return total + compute_fee, compute_fee + total * bps // 10_000


@pytest.fixture
def listed(market: Market) -> Market:
    """Listings 1-3 owned by alice, bob, carol at 1, 2, 3 ETH."""
    owners = (market.actors.alice, market.actors.bob, market.actors.carol)
    for owner, price in zip(owners, PRICES, strict=True):
        market.list_dataset(owner.address, price)
    return market


def split(market: Market, job: tuple) -> tuple[list[str], list[int]]:
    """Pays each dataset's owner its price net of the fee share (the rounding goes to the first)."""
    prices = [market.registry.functions.getListing(i).call()[1] for i in job[5]]
    to_payees = job[2] - job[3]
    amounts = [p * to_payees // sum(prices) for p in prices]
    amounts[0] += to_payees - sum(amounts)
    return job[6], amounts


def settle_call(market: Market, job: tuple, amounts: list[int]):
    """`settle` attested by a quorum of the validators."""
    return market.settle_call(job, amounts)


# --- deploy


def test_constructor_sets_roles_and_packed_fees(market: Market):
    escrow = market.escrow.functions
    assert escrow.registry().call() == market.registry.address
    assert escrow.hasRole(ADMIN_ROLE, market.actors.admin.address).call() is True
    assert escrow.hasRole(OPERATOR_ROLE, market.actors.operator.address).call() is True
    assert escrow.hasRole(OPERATOR_ROLE, market.actors.admin.address).call() is False
    assert escrow.OPERATOR_ROLE().call() == OPERATOR_ROLE
    assert escrow.fees().call() == [COMPUTE_FEE, FEE_BPS, REFUND_DELAY]
    assert escrow.MAX_FEE_BPS().call() == MAX_FEE_BPS
    assert escrow.MAX_REFUND_DELAY().call() == MAX_REFUND_DELAY
    # computeFee | feeBps << 96 | refundDelay << 112 | unbondingDelay << 144 |
    # validatorsPerRun << 176 | slashRewardBps << 184 in a single slot.
    slot = 3  # AccessControl._roles is slot 0, EIP712's fallback name and version 1 and 2
    word = int.from_bytes(market.chain.w3.eth.get_storage_at(market.escrow.address, slot))
    _min_stake, unbonding, _quorum, per_run, _validator_fee_bps, slash_bps = VALIDATOR_TERMS
    assert word == (
        COMPUTE_FEE | FEE_BPS << 96 | REFUND_DELAY << 112 | unbonding << 144 | per_run << 176
        | slash_bps << 184
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "error", "error_args"),
    [
        ({"registry": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"admin": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"operator": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"compute_fee": 2**96}, "ComputeFeeTooHigh", (2**96,)),
        ({"fee_bps": MAX_FEE_BPS + 1}, "FeeBpsTooHigh", (MAX_FEE_BPS + 1,)),
        ({"fee_bps": 10_000}, "FeeBpsTooHigh", (10_000,)),
        ({"refund_delay": MAX_REFUND_DELAY + 1}, "RefundDelayTooLong", (MAX_REFUND_DELAY + 1,)),
        ({"refund_delay": 365 * 86400}, "RefundDelayTooLong", (365 * 86400,)),
        ({"same_key": True}, "AdminAndOperatorMustDiffer", ()),
    ],
)
def test_constructor_rejects_bad_configuration(market: Market, args, error, error_args):
    artifact = load_artifact("TrainingEscrow")
    values = {
        "registry": market.registry.address,
        "admin": market.actors.admin.address,
        "operator": market.actors.operator.address,
        "compute_fee": COMPUTE_FEE,
        "fee_bps": FEE_BPS,
        "refund_delay": REFUND_DELAY,
        "validator_terms": VALIDATOR_TERMS,
        **args,
    }
    if values.pop("same_key", False):
        values["operator"] = values["admin"]
    factory = market.chain.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    market.chain.reverts(
        factory.constructor(*values.values()),
        market.actors.admin.address,
        error,
        *error_args,
        abi=artifact["abi"],
    )


# --- quote


def test_quote_sums_current_prices_plus_the_compute_fee(listed: Market):
    quote = listed.escrow.functions.quote
    assert quote([1]).call() == list(expected_quote(ETH))
    assert quote([3, 1, 2]).call() == list(expected_quote(6 * ETH))
    listed.chain.transact(listed.registry.functions.setPrice(2, 5), listed.actors.bob.address)
    assert quote([2]).call() == list(expected_quote(5))


def test_quote_rejections(listed: Market):
    quote, chain = listed.escrow.functions.quote, listed.chain
    chain.view_reverts(quote([]), "NoDatasets")
    chain.view_reverts(quote([1, 2, 1]), "DuplicateDataset", 1)
    chain.view_reverts(quote([2, 3, 3]), "DuplicateDataset", 3)
    chain.view_reverts(quote([1, 4]), "UnknownListing", 4)
    chain.view_reverts(quote([0]), "UnknownListing", 0)
    chain.transact(listed.registry.functions.delist(3), listed.actors.carol.address)
    chain.view_reverts(quote([1, 3]), "ListingDelisted", 3)


# --- fund


def test_fund_with_the_exact_price(listed: Market):
    buyer = listed.actors.buyer.address
    price, fee = expected_quote(3 * ETH)
    receipt = listed.chain.transact(listed.escrow.functions.fund(job_id("a"), [1, 2]), buyer, price)
    funded_at = listed.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]

    assert listed.chain.balance(listed.escrow.address) == price + listed.staked
    assert listed.escrow.functions.jobState(buyer, job_id("a")).call() == FUNDED
    assert events(listed.escrow, receipt, "JobFunded") == [
        {
            "jobId": job_id("a"),
            "buyer": buyer,
            "datasetIds": [1, 2],
            "owners": [listed.actors.alice.address, listed.actors.bob.address],
            "value": price,
            "fee": fee,
            "refundAfter": funded_at + REFUND_DELAY,
        }
    ]


def test_fund_rejections(listed: Market):
    buyer, fund = listed.actors.buyer.address, listed.escrow.functions.fund
    price, _ = expected_quote(ETH)
    listed.chain.reverts(
        fund(job_id("a"), [1]), buyer, "WrongPayment", price, price - 1, value=price - 1
    )
    listed.chain.reverts(
        fund(job_id("a"), [1]), buyer, "WrongPayment", price, price + 1, value=price + 1
    )
    listed.chain.reverts(fund(job_id("a"), []), buyer, "NoDatasets", value=price)
    listed.chain.reverts(fund(job_id("a"), [1, 1]), buyer, "DuplicateDataset", 1, value=price)
    listed.chain.reverts(fund(job_id("a"), [9]), buyer, "UnknownListing", 9, value=price)

    listed.chain.transact(fund(job_id("a"), [1]), buyer, price)
    listed.chain.reverts(fund(job_id("a"), [1]), buyer, "JobExists", job_id("a"), value=price)
    assert listed.escrow.functions.jobState(buyer, job_id("b")).call() == NONE


# --- settle


def test_settle_credits_owners_and_keeps_the_fee(listed: Market):
    _, job = listed.fund(job_id("a"), [1, 2, 3])
    payees, amounts = split(listed, job)
    receipt = listed.chain.transact(
        settle_call(listed, job, amounts), listed.actors.operator.address
    )

    escrow = listed.escrow.functions
    a = listed.actors
    attesters = [v.address for v in listed.validators[:2]]
    share = listed.validator_share(job)
    assert share == job[3] * 3_000 // 10_000 // 2 > 0
    assert payees == [a.alice.address, a.bob.address, a.carol.address]
    assert escrow.jobState(job[1], job_id("a")).call() == SETTLED
    assert [escrow.balanceOf(p).call() for p in payees] == amounts
    assert [escrow.balanceOf(v).call() for v in attesters] == [share, share]
    assert escrow.feesHeld().call() == listed.kept_fee(job) == job[3] - 2 * share
    assert (
        sum(amounts) + listed.kept_fee(job) + 2 * share
        == job[2]
        == listed.chain.balance(listed.escrow.address) - listed.staked
    )
    assert events(listed.escrow, receipt, "PayeeCredited") == [
        {"payee": p, "jobId": job_id("a"), "amount": a}
        for p, a in zip(payees, amounts, strict=True)
    ] + [{"payee": v, "jobId": job_id("a"), "amount": share} for v in attesters]
    assert events(listed.escrow, receipt, "JobSettled") == [
        {
            "jobId": job_id("a"),
            "buyer": job[1],
            "modelCid": MODEL_CID,
            "reportHash": REPORT_HASH,
            "fee": listed.kept_fee(job),
            "validators": attesters,
        }
    ]


def test_an_owner_of_two_datasets_is_credited_for_each(listed: Market):
    alice = listed.actors.alice.address
    second = listed.list_dataset(alice, ETH)
    _, job = listed.fund(job_id("a"), [1, second])
    assert job[6] == [alice, alice]
    half = (job[2] - job[3]) // 2
    amounts = [half, job[2] - job[3] - half]
    listed.chain.transact(settle_call(listed, job, amounts), listed.actors.operator.address)
    assert listed.escrow.functions.balanceOf(alice).call() == job[2] - job[3]


def test_settle_twice_is_rejected(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    payees, amounts = split(listed, job)
    operator = listed.actors.operator.address
    listed.chain.transact(settle_call(listed, job, amounts), operator)
    listed.chain.reverts(settle_call(listed, job, amounts), operator, "JobNotFunded", job[0])
    assert listed.escrow.functions.balanceOf(payees[0]).call() == amounts[0]


def test_settle_rejections(listed: Market):
    _, job = listed.fund(job_id("a"), [1, 2])
    _, amounts = split(listed, job)
    operator, chain = listed.actors.operator.address, listed.chain
    to_payees = job[2] - job[3]

    chain.reverts(
        settle_call(listed, (job_id("zz"), *job[1:]), amounts), operator, "UnknownJob", job_id("zz")
    )
    chain.reverts(
        settle_call(listed, (job[0], listed.actors.stranger.address, *job[2:]), amounts),
        operator,
        "UnknownJob",
        job[0],
    )
    for tampered in (
        (*job[:2], job[2] + 1, *job[3:]),
        (*job[:3], job[3] - 1, *job[4:]),
        (*job[:4], job[4] + 1, *job[5:]),
        (*job[:5], [2, 1], job[6]),
        (*job[:5], [1, 3], job[6]),
        (*job[:6], list(reversed(job[6]))),
    ):
        chain.reverts(settle_call(listed, tampered, amounts), operator, "JobTermsMismatch", job[0])
    chain.reverts(settle_call(listed, job, amounts[:1]), operator, "LengthMismatch")
    chain.reverts(settle_call(listed, job, [*amounts, 0]), operator, "LengthMismatch")
    chain.reverts(
        settle_call(listed, job, [amounts[0] - 1, amounts[1]]),
        operator,
        "AmountsMismatch",
        to_payees,
        to_payees - 1,
    )
    chain.reverts(
        settle_call(listed, job, [amounts[0], amounts[1] + 1]),
        operator,
        "AmountsMismatch",
        to_payees,
        to_payees + 1,
    )
    assert listed.escrow.functions.jobState(job[1], job[0]).call() == FUNDED


def test_settle_cannot_credit_an_address_outside_the_job(listed: Market):
    """The payees are the owners committed at funding: naming another address (the operator's
    own, a stranger's) in their place is a terms mismatch, and nothing is credited."""
    _, job = listed.fund(job_id("a"), [1, 2])
    _, amounts = split(listed, job)
    operator, stranger = listed.actors.operator.address, listed.actors.stranger.address
    for outsider in (stranger, operator):
        for position in (0, 1):
            owners = list(job[6])
            owners[position] = outsider
            listed.chain.reverts(
                settle_call(listed, (*job[:6], owners), amounts),
                operator,
                "JobTermsMismatch",
                job[0],
            )
    # Nor can a whole job be made up around the outsider (another buyer's slot is empty).
    made_up = (job[0], stranger, job[2], job[3], job[4], [1], [stranger])
    listed.chain.reverts(
        settle_call(listed, made_up, [job[2] - job[3]]), operator, "UnknownJob", job[0]
    )
    assert listed.escrow.functions.balanceOf(stranger).call() == 0
    assert listed.escrow.functions.balanceOf(operator).call() == 0
    assert listed.escrow.functions.jobState(job[1], job[0]).call() == FUNDED


def test_the_owners_are_read_from_the_registry_at_funding(listed: Market):
    """The buyer names only dataset ids; the owners in the commitment come from the registry."""
    price, _ = listed.escrow.functions.quote([3, 1]).call()
    receipt = listed.chain.transact(
        listed.escrow.functions.fund(job_id("a"), [3, 1]), listed.actors.buyer.address, price
    )
    funded = events(listed.escrow, receipt, "JobFunded")[0]
    assert funded["owners"] == [listed.actors.carol.address, listed.actors.alice.address]


def test_prices_and_fees_are_frozen_at_funding(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    admin, operator = listed.actors.admin.address, listed.actors.operator.address
    receipt = listed.chain.transact(listed.escrow.functions.setFees(7, MAX_FEE_BPS), admin)
    assert events(listed.escrow, receipt, "FeesChanged") == [
        {"computeFee": 7, "feeBps": MAX_FEE_BPS}
    ]
    receipt = listed.chain.transact(listed.escrow.functions.setRefundDelay(60), admin)
    assert events(listed.escrow, receipt, "RefundDelayChanged") == [{"refundDelay": 60}]
    listed.chain.transact(listed.registry.functions.setPrice(1, 100), listed.actors.alice.address)

    assert listed.escrow.functions.fees().call() == [7, MAX_FEE_BPS, 60]
    assert listed.escrow.functions.quote([1]).call() == [100 + 7, 7 + 20]
    _, amounts = split(listed, job)
    listed.chain.transact(settle_call(listed, job, amounts), operator)
    assert job[3] == expected_quote(ETH)[1]
    assert listed.escrow.functions.feesHeld().call() == listed.kept_fee(job)
    assert amounts == [ETH - ETH * FEE_BPS // 10_000]


def test_fee_and_delay_bounds(listed: Market):
    admin = listed.actors.admin.address
    escrow = listed.escrow.functions
    listed.chain.reverts(
        escrow.setFees(0, MAX_FEE_BPS + 1), admin, "FeeBpsTooHigh", MAX_FEE_BPS + 1
    )
    listed.chain.reverts(escrow.setFees(0, 10_000), admin, "FeeBpsTooHigh", 10_000)
    listed.chain.reverts(escrow.setFees(2**96, 0), admin, "ComputeFeeTooHigh", 2**96)
    listed.chain.reverts(
        escrow.setRefundDelay(MAX_REFUND_DELAY + 1),
        admin,
        "RefundDelayTooLong",
        MAX_REFUND_DELAY + 1,
    )
    listed.chain.reverts(
        escrow.setRefundDelay(365 * 86400), admin, "RefundDelayTooLong", 365 * 86400
    )
    listed.chain.reverts(escrow.setRefundDelay(2**63), admin, "RefundDelayTooLong", 2**63)
    # The bounds themselves are allowed, and so are free jobs (everything to the owners).
    listed.chain.transact(escrow.setFees(2**96 - 1, MAX_FEE_BPS), admin)
    listed.chain.transact(escrow.setRefundDelay(MAX_REFUND_DELAY), admin)
    assert escrow.fees().call() == [2**96 - 1, MAX_FEE_BPS, MAX_REFUND_DELAY]
    listed.chain.transact(escrow.setFees(0, 0), admin)
    assert escrow.quote([1, 2]).call() == [3 * ETH, 0]


def test_the_bounds_cap_a_funded_jobs_fee_and_delay(listed: Market):
    admin = listed.actors.admin.address
    escrow = listed.escrow.functions
    listed.chain.transact(escrow.setFees(0, MAX_FEE_BPS), admin)
    listed.chain.transact(escrow.setRefundDelay(MAX_REFUND_DELAY), admin)
    receipt, job = listed.fund(job_id("a"), [1])
    funded_at = listed.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert job[3] == ETH * MAX_FEE_BPS // 10_000 == job[2] // 5
    assert job[4] == funded_at + MAX_REFUND_DELAY


# --- roles: the admin (fees, roles) and the operator (settle, refund) are different keys


def test_the_operator_cannot_set_fees_or_roles(listed: Market):
    operator = listed.actors.operator.address
    escrow = listed.escrow.functions
    for call in (
        escrow.setFees(0, 0),
        escrow.setRefundDelay(0),
        escrow.withdrawFees(operator),
        escrow.grantRole(OPERATOR_ROLE, listed.actors.stranger.address),
        escrow.grantRole(ADMIN_ROLE, operator),
    ):
        listed.chain.reverts(
            call, operator, "AccessControlUnauthorizedAccount", operator, ADMIN_ROLE
        )


def test_the_admin_cannot_settle_or_refund_early(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    _, amounts = split(listed, job)
    admin = listed.actors.admin.address
    listed.chain.reverts(
        settle_call(listed, job, amounts),
        admin,
        "AccessControlUnauthorizedAccount",
        admin,
        OPERATOR_ROLE,
    )
    listed.chain.reverts(listed.escrow.functions.refund(job), admin, "NotBuyerOrOperator")
    assert listed.escrow.functions.jobState(job[1], job[0]).call() == FUNDED


def test_no_account_holds_both_roles(listed: Market):
    admin, operator = listed.actors.admin.address, listed.actors.operator.address
    escrow = listed.escrow.functions
    listed.chain.reverts(
        escrow.grantRole(OPERATOR_ROLE, admin), admin, "AdminAndOperatorMustDiffer", admin
    )
    listed.chain.reverts(
        escrow.grantRole(ADMIN_ROLE, operator), admin, "AdminAndOperatorMustDiffer", operator
    )
    assert escrow.hasRole(OPERATOR_ROLE, admin).call() is False
    assert escrow.hasRole(ADMIN_ROLE, operator).call() is False


# --- a stranger funding a buyer's job id


def test_a_strangers_funding_neither_blocks_nor_counts_for_the_buyer(listed: Market):
    """The job id is readable before payment: a stranger who funds it first gets a job of its
    own, the buyer still pays, the operator settles the buyer's job, and the stranger can only
    reclaim its own money after the delay."""
    a = listed.actors
    buyer, stranger, operator = a.buyer.address, a.stranger.address, a.operator.address
    escrow = listed.escrow.functions
    _, theirs = listed.fund(job_id("a"), [1], buyer=stranger)
    assert escrow.jobState(buyer, job_id("a")).call() == NONE

    _, job = listed.fund(job_id("a"), [1, 2], buyer=buyer)
    assert escrow.jobState(buyer, job_id("a")).call() == FUNDED
    assert escrow.jobState(stranger, job_id("a")).call() == FUNDED
    # The stranger's payment is not the buyer's: its terms settle nothing of the buyer's.
    listed.chain.reverts(
        settle_call(listed, (*theirs[:1], buyer, *theirs[2:]), [theirs[2] - theirs[3]]),
        operator,
        "JobTermsMismatch",
        job[0],
    )
    _, amounts = split(listed, job)
    listed.chain.transact(settle_call(listed, job, amounts), operator)
    assert escrow.jobState(buyer, job_id("a")).call() == SETTLED
    assert escrow.balanceOf(a.alice.address).call() == amounts[0]
    assert escrow.balanceOf(a.bob.address).call() == amounts[1]

    # The stranger can touch neither the buyer's job nor anyone's money but its own.
    listed.chain.increase_time(REFUND_DELAY + 1)
    listed.chain.reverts(escrow.refund(job), stranger, "JobNotFunded", job[0])
    listed.chain.reverts(
        escrow.refund((*theirs[:1], buyer, *theirs[2:])), stranger, "JobNotFunded", job[0]
    )
    receipt = listed.chain.transact(escrow.refund(theirs), stranger)
    assert events(listed.escrow, receipt, "JobRefunded") == [
        {"jobId": job[0], "buyer": stranger, "value": theirs[2]}
    ]
    assert escrow.balanceOf(stranger).call() == theirs[2]
    assert escrow.balanceOf(buyer).call() == 0
    assert escrow.jobState(buyer, job_id("a")).call() == SETTLED
    assert (
        listed.chain.balance(listed.escrow.address)
        == sum(amounts) + job[3] + theirs[2] + listed.staked
    )


def test_a_buyer_cannot_fund_the_same_job_twice(listed: Market):
    buyer = listed.actors.buyer.address
    listed.fund(job_id("a"), [1], buyer=buyer)
    price, _ = listed.escrow.functions.quote([1]).call()
    listed.chain.reverts(
        listed.escrow.functions.fund(job_id("a"), [1]), buyer, "JobExists", job_id("a"), value=price
    )


# --- refund


def test_operator_refunds_before_settlement(listed: Market):
    _, job = listed.fund(job_id("a"), [2])
    receipt = listed.chain.transact(
        listed.escrow.functions.refund(job), listed.actors.operator.address
    )
    buyer = listed.actors.buyer.address
    assert listed.escrow.functions.jobState(buyer, job[0]).call() == REFUNDED
    assert listed.escrow.functions.balanceOf(buyer).call() == job[2]
    assert events(listed.escrow, receipt, "JobRefunded") == [
        {"jobId": job[0], "buyer": buyer, "value": job[2]}
    ]
    _, amounts = split(listed, job)
    operator = listed.actors.operator.address
    listed.chain.reverts(settle_call(listed, job, amounts), operator, "JobNotFunded", job[0])
    listed.chain.reverts(listed.escrow.functions.refund(job), operator, "JobNotFunded", job[0])


def test_refund_after_settlement_is_rejected(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    _, amounts = split(listed, job)
    operator, buyer = listed.actors.operator.address, listed.actors.buyer.address
    listed.chain.transact(settle_call(listed, job, amounts), operator)
    listed.chain.increase_time(REFUND_DELAY + 1)
    listed.chain.reverts(listed.escrow.functions.refund(job), operator, "JobNotFunded", job[0])
    listed.chain.reverts(listed.escrow.functions.refund(job), buyer, "JobNotFunded", job[0])


def test_buyer_refunds_only_after_the_delay(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    buyer, stranger = listed.actors.buyer.address, listed.actors.stranger.address
    refund = listed.escrow.functions.refund(job)
    listed.chain.reverts(refund, buyer, "RefundNotYetAllowed", job[4])
    listed.chain.reverts(refund, stranger, "NotBuyerOrOperator")

    listed.chain.mine_at(job[4] - 2)
    listed.chain.reverts(refund, buyer, "RefundNotYetAllowed", job[4])
    listed.chain.mine_at(job[4])
    receipt = listed.chain.transact(refund, buyer)
    assert events(listed.escrow, receipt, "JobRefunded")[0]["value"] == job[2]
    assert listed.escrow.functions.balanceOf(buyer).call() == job[2]
    listed.chain.reverts(
        listed.escrow.functions.refund((job_id("b"), *job[1:])), buyer, "UnknownJob", job_id("b")
    )


def test_stranger_cannot_refund_even_after_the_delay(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    listed.chain.increase_time(REFUND_DELAY + 1)
    listed.chain.reverts(
        listed.escrow.functions.refund(job), listed.actors.stranger.address, "NotBuyerOrOperator"
    )
    # ...and cannot name itself buyer: it funded no such job.
    forged = (job[0], listed.actors.stranger.address, *job[2:])
    listed.chain.reverts(
        listed.escrow.functions.refund(forged),
        listed.actors.stranger.address,
        "UnknownJob",
        job[0],
    )


# --- withdraw


def test_withdraw_pays_the_whole_balance_once(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    _, amounts = split(listed, job)
    listed.chain.transact(settle_call(listed, job, amounts), listed.actors.operator.address)
    alice = listed.actors.alice.address
    before = listed.chain.balance(alice)

    receipt = listed.chain.transact(listed.escrow.functions.withdraw(), alice)

    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert listed.chain.balance(alice) == before + amounts[0] - gas_cost
    assert listed.escrow.functions.balanceOf(alice).call() == 0
    assert events(listed.escrow, receipt, "Withdrawn") == [{"account": alice, "amount": amounts[0]}]
    assert listed.chain.balance(listed.escrow.address) == job[3] + listed.staked
    listed.chain.reverts(listed.escrow.functions.withdraw(), alice, "NothingToWithdraw")


def test_withdraw_with_nothing(listed: Market):
    listed.chain.reverts(
        listed.escrow.functions.withdraw(), listed.actors.stranger.address, "NothingToWithdraw"
    )


def test_withdraw_fees(listed: Market):
    _, job = listed.fund(job_id("a"), [1, 3])
    _, amounts = split(listed, job)
    admin, operator = listed.actors.admin.address, listed.actors.operator.address
    treasury = listed.actors.stranger.address
    escrow = listed.escrow.functions
    listed.chain.reverts(escrow.withdrawFees(treasury), admin, "NothingToWithdraw")
    listed.chain.transact(settle_call(listed, job, amounts), operator)
    listed.chain.reverts(
        escrow.withdrawFees(operator),
        operator,
        "AccessControlUnauthorizedAccount",
        operator,
        ADMIN_ROLE,
    )
    listed.chain.reverts(escrow.withdrawFees("0x" + "00" * 20), admin, "ZeroAddress")
    before = listed.chain.balance(treasury)

    receipt = listed.chain.transact(escrow.withdrawFees(treasury), admin)

    kept = listed.kept_fee(job)
    assert listed.chain.balance(treasury) == before + kept
    assert escrow.feesHeld().call() == 0
    assert escrow.fees().call() == [COMPUTE_FEE, FEE_BPS, REFUND_DELAY]  # untouched
    assert events(listed.escrow, receipt, "FeesWithdrawn") == [{"to": treasury, "amount": kept}]
    listed.chain.reverts(escrow.withdrawFees(treasury), admin, "NothingToWithdraw")
    # The payees' and validators' credits (and the stakes) are untouched by the admin's withdrawal.
    assert listed.chain.balance(listed.escrow.address) == (
        sum(amounts) + job[3] - kept + listed.staked
    )


def test_fee_changes_keep_the_fees_held(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    _, amounts = split(listed, job)
    listed.chain.transact(settle_call(listed, job, amounts), listed.actors.operator.address)
    admin = listed.actors.admin.address
    listed.chain.transact(listed.escrow.functions.setFees(3, 7), admin)
    listed.chain.transact(listed.escrow.functions.setRefundDelay(61), admin)
    assert listed.escrow.functions.feesHeld().call() == listed.kept_fee(job)


# --- roles


def test_roles_are_managed_by_the_admin(listed: Market):
    admin, newcomer = listed.actors.admin.address, listed.actors.stranger.address
    escrow = listed.escrow.functions
    listed.chain.transact(escrow.grantRole(OPERATOR_ROLE, newcomer), admin)
    _, job = listed.fund(job_id("a"), [1])
    _, amounts = split(listed, job)
    listed.chain.transact(settle_call(listed, job, amounts), newcomer)

    listed.chain.transact(escrow.revokeRole(OPERATOR_ROLE, newcomer), admin)
    _, job = listed.fund(job_id("b"), [1])
    listed.chain.reverts(
        escrow.refund(job), newcomer, "NotBuyerOrOperator"
    )  # no longer an operator, not the buyer
    listed.chain.reverts(
        settle_call(listed, job, amounts),
        newcomer,
        "AccessControlUnauthorizedAccount",
        newcomer,
        OPERATOR_ROLE,
    )


def test_the_escrow_refuses_plain_ether(listed: Market):
    with pytest.raises(Exception):  # noqa: B017 - no receive(): any revert will do
        listed.chain.w3.eth.send_transaction(
            {"from": listed.actors.buyer.address, "to": listed.escrow.address, "value": 1}
        )
    assert listed.chain.balance(listed.escrow.address) == listed.staked


# --- reentrancy


SWALLOW, BUBBLE, REJECT = 0, 1, 2


@pytest.fixture
def attacker(listed: Market):
    return listed.chain.deploy("ReentrantWithdrawer", listed.escrow.address)


def credit(listed: Market, attacker, label: str = "a") -> int:
    """Settle a job over a dataset the attacker contract owns: it is credited the whole amount."""
    stranger = listed.actors.stranger.address
    receipt = listed.chain.transact(attacker.functions.list(listed.registry.address, ETH), stranger)
    listing_id = events(listed.registry, receipt, "DatasetListed")[0]["listingId"]
    _, job = listed.fund(job_id(label), [listing_id])
    assert job[6] == [attacker.address]
    amount = job[2] - job[3]
    listed.chain.transact(settle_call(listed, job, [amount]), listed.actors.operator.address)
    return amount


def test_reentrant_withdraw_fails_and_pays_once(listed: Market, attacker):
    amount = credit(listed, attacker)
    escrow_before = listed.chain.balance(listed.escrow.address)

    receipt = listed.chain.transact(attacker.functions.attack(), listed.actors.stranger.address)

    assert attacker.functions.reentryAttempts().call() == 1
    assert attacker.functions.reentrySucceeded().call() is False
    guard_error = keccak(text="ReentrancyGuardReentrantCall()")[:4]
    assert attacker.functions.lastReentryError().call() == guard_error
    assert attacker.functions.received().call() == amount
    assert listed.chain.balance(attacker.address) == amount
    assert listed.chain.balance(listed.escrow.address) == escrow_before - amount
    assert listed.escrow.functions.balanceOf(attacker.address).call() == 0
    assert events(listed.escrow, receipt, "Withdrawn") == [
        {"account": attacker.address, "amount": amount}
    ]


def test_a_failed_payment_reverts_the_withdrawal(listed: Market, attacker):
    amount = credit(listed, attacker)
    stranger = listed.actors.stranger.address
    escrow_abi = listed.escrow.abi
    for mode in (BUBBLE, REJECT):
        listed.chain.transact(attacker.functions.setMode(mode), stranger)
        listed.chain.reverts(
            attacker.functions.attack(), stranger, "WithdrawFailed", abi=escrow_abi
        )
        assert listed.escrow.functions.balanceOf(attacker.address).call() == amount
    assert listed.chain.balance(attacker.address) == 0


def test_a_buyer_that_rejects_ether_cannot_block_its_refund(listed: Market, attacker):
    stranger = listed.actors.stranger.address
    listed.chain.transact(attacker.functions.setMode(REJECT), stranger)
    price, _ = listed.escrow.functions.quote([2]).call()
    receipt = listed.chain.transact(attacker.functions.fund(job_id("a"), [2]), stranger, price)
    funded = events(listed.escrow, receipt, "JobFunded")[0]
    job = job_terms(funded)
    assert funded["buyer"] == attacker.address

    listed.chain.reverts(
        attacker.functions.refund(job),
        stranger,
        "RefundNotYetAllowed",
        job[4],
        abi=listed.escrow.abi,
    )
    listed.chain.increase_time(REFUND_DELAY)
    listed.chain.transact(attacker.functions.refund(job), stranger)
    assert listed.escrow.functions.jobState(attacker.address, job[0]).call() == REFUNDED
    assert listed.escrow.functions.balanceOf(attacker.address).call() == price

    # Once it accepts ETH again it gets its money (and its re-entry attempt still fails).
    listed.chain.transact(attacker.functions.setMode(SWALLOW), stranger)
    listed.chain.transact(attacker.functions.attack(), stranger)
    assert listed.chain.balance(attacker.address) == price
    assert attacker.functions.reentrySucceeded().call() is False
