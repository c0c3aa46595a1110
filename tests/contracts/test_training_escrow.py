"""TrainingEscrow: quote, fund, settle, refund, pull withdrawals, fees, roles, reentrancy."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from web3 import Web3

from tests.contracts.conftest import (
    COMPUTE_FEE,
    FEE_BPS,
    REFUND_DELAY,
    Market,
    events,
    load_artifact,
)

ETH = 10**18
PRICES = (ETH, 2 * ETH, 3 * ETH)
OPERATOR_ROLE = Web3.keccak(text="OPERATOR_ROLE")
ADMIN_ROLE = b"\x00" * 32
MODEL_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
REPORT_HASH = keccak(text="valuation report")
NONE, FUNDED, SETTLED, REFUNDED = 0, 1, 2, 3


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


def split(market: Market, job: tuple, dataset_ids: list[int]) -> tuple[list[str], list[int]]:
    """Pays each dataset's owner its price net of the fee share (the rounding goes to the first)."""
    owners = [market.registry.functions.getListing(i).call()[0] for i in dataset_ids]
    prices = [market.registry.functions.getListing(i).call()[1] for i in dataset_ids]
    to_payees = job[2] - job[3]
    amounts = [p * to_payees // sum(prices) for p in prices]
    amounts[0] += to_payees - sum(amounts)
    return owners, amounts


def settle_call(market: Market, job: tuple, payees: list[str], amounts: list[int]):
    return market.escrow.functions.settle(job, payees, amounts, MODEL_CID, REPORT_HASH)


# --- deploy


def test_constructor_sets_roles_and_packed_fees(market: Market):
    escrow = market.escrow.functions
    assert escrow.registry().call() == market.registry.address
    assert escrow.hasRole(ADMIN_ROLE, market.actors.admin.address).call() is True
    assert escrow.hasRole(OPERATOR_ROLE, market.actors.operator.address).call() is True
    assert escrow.hasRole(OPERATOR_ROLE, market.actors.admin.address).call() is False
    assert escrow.OPERATOR_ROLE().call() == OPERATOR_ROLE
    assert escrow.fees().call() == [COMPUTE_FEE, FEE_BPS, REFUND_DELAY]
    # computeFee | feeBps << 128 | refundDelay << 144 in a single slot.
    slot = 1  # AccessControl._roles is slot 0
    word = int.from_bytes(market.chain.w3.eth.get_storage_at(market.escrow.address, slot))
    assert word == COMPUTE_FEE | FEE_BPS << 128 | REFUND_DELAY << 144


@pytest.mark.parametrize(
    ("args", "error", "error_args"),
    [
        ({"registry": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"admin": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"operator": "0x" + "00" * 20}, "ZeroAddress", ()),
        ({"compute_fee": 2**128}, "ComputeFeeTooHigh", (2**128,)),
        ({"fee_bps": 10_001}, "FeeBpsTooHigh", (10_001,)),
        ({"refund_delay": 365 * 86400 + 1}, "RefundDelayTooLong", (365 * 86400 + 1,)),
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
        **args,
    }
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

    assert listed.chain.balance(listed.escrow.address) == price
    assert listed.escrow.functions.jobState(job_id("a")).call() == FUNDED
    assert events(listed.escrow, receipt, "JobFunded") == [
        {
            "jobId": job_id("a"),
            "buyer": buyer,
            "datasetIds": [1, 2],
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
    assert listed.escrow.functions.jobState(job_id("b")).call() == NONE


# --- settle


def test_settle_credits_payees_and_keeps_the_fee(listed: Market):
    _, job = listed.fund(job_id("a"), [1, 2, 3])
    payees, amounts = split(listed, job, [1, 2, 3])
    receipt = listed.chain.transact(
        settle_call(listed, job, payees, amounts), listed.actors.operator.address
    )

    escrow = listed.escrow.functions
    assert escrow.jobState(job_id("a")).call() == SETTLED
    assert [escrow.balanceOf(p).call() for p in payees] == amounts
    assert escrow.feesHeld().call() == job[3]
    assert sum(amounts) + job[3] == job[2] == listed.chain.balance(listed.escrow.address)
    assert events(listed.escrow, receipt, "PayeeCredited") == [
        {"payee": p, "jobId": job_id("a"), "amount": a}
        for p, a in zip(payees, amounts, strict=True)
    ]
    assert events(listed.escrow, receipt, "JobSettled") == [
        {"jobId": job_id("a"), "modelCid": MODEL_CID, "reportHash": REPORT_HASH, "fee": job[3]}
    ]


def test_settle_the_same_payee_twice_adds_up(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    alice = listed.actors.alice.address
    half = (job[2] - job[3]) // 2
    amounts = [half, job[2] - job[3] - half]
    listed.chain.transact(
        settle_call(listed, job, [alice, alice], amounts), listed.actors.operator.address
    )
    assert listed.escrow.functions.balanceOf(alice).call() == job[2] - job[3]


def test_settle_twice_is_rejected(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    payees, amounts = split(listed, job, [1])
    operator = listed.actors.operator.address
    listed.chain.transact(settle_call(listed, job, payees, amounts), operator)
    listed.chain.reverts(
        settle_call(listed, job, payees, amounts), operator, "JobNotFunded", job[0]
    )
    assert listed.escrow.functions.balanceOf(payees[0]).call() == amounts[0]


def test_settle_rejections(listed: Market):
    _, job = listed.fund(job_id("a"), [1, 2])
    payees, amounts = split(listed, job, [1, 2])
    operator, chain = listed.actors.operator.address, listed.chain
    to_payees = job[2] - job[3]

    chain.reverts(
        settle_call(listed, (job_id("zz"), *job[1:]), payees, amounts),
        operator,
        "UnknownJob",
        job_id("zz"),
    )
    for tampered in (
        (job[0], listed.actors.stranger.address, *job[2:]),
        (job[0], job[1], job[2] + 1, job[3], job[4]),
        (job[0], job[1], job[2], job[3] - 1, job[4]),
        (job[0], job[1], job[2], job[3], job[4] + 1),
    ):
        chain.reverts(
            settle_call(listed, tampered, payees, amounts), operator, "JobTermsMismatch", job[0]
        )
    chain.reverts(settle_call(listed, job, payees, amounts[:1]), operator, "LengthMismatch")
    chain.reverts(
        settle_call(listed, job, [payees[0], "0x" + "00" * 20], amounts), operator, "ZeroPayee"
    )
    chain.reverts(
        settle_call(listed, job, payees, [amounts[0] - 1, amounts[1]]),
        operator,
        "AmountsMismatch",
        to_payees,
        to_payees - 1,
    )
    chain.reverts(
        settle_call(listed, job, payees, [amounts[0], amounts[1] + 1]),
        operator,
        "AmountsMismatch",
        to_payees,
        to_payees + 1,
    )
    chain.reverts(
        settle_call(listed, job, payees, amounts),
        listed.actors.admin.address,
        "AccessControlUnauthorizedAccount",
        listed.actors.admin.address,
        OPERATOR_ROLE,
    )
    assert listed.escrow.functions.jobState(job[0]).call() == FUNDED


def test_prices_and_fees_are_frozen_at_funding(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    admin, operator = listed.actors.admin.address, listed.actors.operator.address
    receipt = listed.chain.transact(listed.escrow.functions.setFees(7, 10_000), admin)
    assert events(listed.escrow, receipt, "FeesChanged") == [{"computeFee": 7, "feeBps": 10_000}]
    receipt = listed.chain.transact(listed.escrow.functions.setRefundDelay(60), admin)
    assert events(listed.escrow, receipt, "RefundDelayChanged") == [{"refundDelay": 60}]
    listed.chain.transact(listed.registry.functions.setPrice(1, 1), listed.actors.alice.address)

    assert listed.escrow.functions.fees().call() == [7, 10_000, 60]
    assert listed.escrow.functions.quote([1]).call() == [1 + 7, 7 + 1]
    payees, amounts = split(listed, job, [1])
    listed.chain.transact(settle_call(listed, job, payees, amounts), operator)
    assert listed.escrow.functions.feesHeld().call() == expected_quote(ETH)[1]
    assert amounts == [ETH - ETH * FEE_BPS // 10_000]


def test_fee_setters_are_checked(listed: Market):
    admin, operator = listed.actors.admin.address, listed.actors.operator.address
    escrow = listed.escrow.functions
    listed.chain.reverts(escrow.setFees(0, 10_001), admin, "FeeBpsTooHigh", 10_001)
    listed.chain.reverts(escrow.setFees(2**128, 0), admin, "ComputeFeeTooHigh", 2**128)
    listed.chain.reverts(escrow.setRefundDelay(2**63), admin, "RefundDelayTooLong", 2**63)
    for call in (escrow.setFees(0, 0), escrow.setRefundDelay(0)):
        listed.chain.reverts(
            call, operator, "AccessControlUnauthorizedAccount", operator, ADMIN_ROLE
        )
    # Free jobs are possible: no fee at all, everything to the dataset owners.
    listed.chain.transact(escrow.setFees(0, 0), admin)
    assert escrow.quote([1, 2]).call() == [3 * ETH, 0]


# --- refund


def test_operator_refunds_before_settlement(listed: Market):
    _, job = listed.fund(job_id("a"), [2])
    receipt = listed.chain.transact(
        listed.escrow.functions.refund(job), listed.actors.operator.address
    )
    buyer = listed.actors.buyer.address
    assert listed.escrow.functions.jobState(job[0]).call() == REFUNDED
    assert listed.escrow.functions.balanceOf(buyer).call() == job[2]
    assert events(listed.escrow, receipt, "JobRefunded") == [
        {"jobId": job[0], "buyer": buyer, "value": job[2]}
    ]
    payees, amounts = split(listed, job, [2])
    operator = listed.actors.operator.address
    listed.chain.reverts(
        settle_call(listed, job, payees, amounts), operator, "JobNotFunded", job[0]
    )
    listed.chain.reverts(listed.escrow.functions.refund(job), operator, "JobNotFunded", job[0])


def test_refund_after_settlement_is_rejected(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    payees, amounts = split(listed, job, [1])
    operator, buyer = listed.actors.operator.address, listed.actors.buyer.address
    listed.chain.transact(settle_call(listed, job, payees, amounts), operator)
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
    # ...and cannot name itself buyer: the terms are checked against the commitment.
    forged = (job[0], listed.actors.stranger.address, *job[2:])
    listed.chain.reverts(
        listed.escrow.functions.refund(forged),
        listed.actors.stranger.address,
        "JobTermsMismatch",
        job[0],
    )


# --- withdraw


def test_withdraw_pays_the_whole_balance_once(listed: Market):
    _, job = listed.fund(job_id("a"), [1])
    payees, amounts = split(listed, job, [1])
    listed.chain.transact(settle_call(listed, job, payees, amounts), listed.actors.operator.address)
    alice = listed.actors.alice.address
    before = listed.chain.balance(alice)

    receipt = listed.chain.transact(listed.escrow.functions.withdraw(), alice)

    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert listed.chain.balance(alice) == before + amounts[0] - gas_cost
    assert listed.escrow.functions.balanceOf(alice).call() == 0
    assert events(listed.escrow, receipt, "Withdrawn") == [{"account": alice, "amount": amounts[0]}]
    assert listed.chain.balance(listed.escrow.address) == job[3]
    listed.chain.reverts(listed.escrow.functions.withdraw(), alice, "NothingToWithdraw")


def test_withdraw_with_nothing(listed: Market):
    listed.chain.reverts(
        listed.escrow.functions.withdraw(), listed.actors.stranger.address, "NothingToWithdraw"
    )


def test_withdraw_fees(listed: Market):
    _, job = listed.fund(job_id("a"), [1, 3])
    payees, amounts = split(listed, job, [1, 3])
    admin, operator = listed.actors.admin.address, listed.actors.operator.address
    treasury = listed.actors.stranger.address
    escrow = listed.escrow.functions
    listed.chain.reverts(escrow.withdrawFees(treasury), admin, "NothingToWithdraw")
    listed.chain.transact(settle_call(listed, job, payees, amounts), operator)
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

    assert listed.chain.balance(treasury) == before + job[3]
    assert escrow.feesHeld().call() == 0
    assert events(listed.escrow, receipt, "FeesWithdrawn") == [{"to": treasury, "amount": job[3]}]
    listed.chain.reverts(escrow.withdrawFees(treasury), admin, "NothingToWithdraw")
    # The payees' credits are untouched by the admin's withdrawal.
    assert listed.chain.balance(listed.escrow.address) == sum(amounts)


# --- roles


def test_roles_are_managed_by_the_admin(listed: Market):
    admin, newcomer = listed.actors.admin.address, listed.actors.stranger.address
    escrow = listed.escrow.functions
    listed.chain.reverts(
        escrow.grantRole(OPERATOR_ROLE, newcomer),
        listed.actors.operator.address,
        "AccessControlUnauthorizedAccount",
        listed.actors.operator.address,
        ADMIN_ROLE,
    )
    listed.chain.transact(escrow.grantRole(OPERATOR_ROLE, newcomer), admin)
    _, job = listed.fund(job_id("a"), [1])
    payees, amounts = split(listed, job, [1])
    listed.chain.transact(settle_call(listed, job, payees, amounts), newcomer)

    listed.chain.transact(escrow.revokeRole(OPERATOR_ROLE, newcomer), admin)
    _, job = listed.fund(job_id("b"), [1])
    listed.chain.reverts(
        escrow.refund(job), newcomer, "NotBuyerOrOperator"
    )  # no longer an operator, not the buyer
    listed.chain.reverts(
        settle_call(listed, job, payees, amounts),
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
    assert listed.chain.balance(listed.escrow.address) == 0


# --- reentrancy


SWALLOW, BUBBLE, REJECT = 0, 1, 2


@pytest.fixture
def attacker(listed: Market):
    return listed.chain.deploy("ReentrantWithdrawer", listed.escrow.address)


def credit(listed: Market, payee: str, label: str = "a") -> int:
    _, job = listed.fund(job_id(label), [1])
    amount = job[2] - job[3]
    listed.chain.transact(
        settle_call(listed, job, [payee], [amount]), listed.actors.operator.address
    )
    return amount


def test_reentrant_withdraw_fails_and_pays_once(listed: Market, attacker):
    amount = credit(listed, attacker.address)
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
    amount = credit(listed, attacker.address)
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
    job = (job_id("a"), attacker.address, funded["value"], funded["fee"], funded["refundAfter"])
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
    assert listed.escrow.functions.jobState(job[0]).call() == REFUNDED
    assert listed.escrow.functions.balanceOf(attacker.address).call() == price

    # Once it accepts ETH again it gets its money (and its re-entry attempt still fails).
    listed.chain.transact(attacker.functions.setMode(SWALLOW), stranger)
    listed.chain.transact(attacker.functions.attack(), stranger)
    assert listed.chain.balance(attacker.address) == price
    assert attacker.functions.reentrySucceeded().call() is False
