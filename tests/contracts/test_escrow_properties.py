"""Property: whatever sequence of fund / settle / refund / withdraw / fee operations and of
validators staking, unstaking and being slashed runs, the escrow's ETH equals what it owes:
withdrawable balances (validators' fee shares included) + funded-unsettled jobs + fees held +
stakes + burned stakes; whoever funds another buyer's job id gets a job of its own, never the
buyer's; and a settlement counts only a quorum of attestations from validators in good standing."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contracts.conftest import (
    MIN_STAKE,
    QUORUM,
    REFUND_DELAY,
    SLASH_REWARD_BPS,
    UNBONDING_DELAY,
    VALIDATOR_FEE_BPS,
    Market,
    events,
)
from tests.contracts.signing import sign_attestation

ACTIVE, LEAVING, REMOVED = 1, 2, 3

DATASET_PRICES = (10**15, 3 * 10**15 + 7, 5 * 10**16 + 13)

dataset_sets = st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True)
fund_operations = st.tuples(st.just("fund"), st.integers(0, 2), dataset_sets)
operations = st.one_of(
    fund_operations,
    fund_operations,
    # Another buyer funds a job id already funded (e.g. a stranger copying a buyer's id).
    st.tuples(st.just("fund_taken_id"), st.integers(0, 20), st.integers(0, 2), dataset_sets),
    st.tuples(
        st.just("settle"),
        st.integers(0, 20),
        st.lists(st.integers(0, 5), min_size=1, max_size=4),
        # Which of the three validators attest (bits), mostly a quorum or more.
        st.sampled_from([3, 5, 6, 7, 7, 1, 4]),
    ),
    st.tuples(st.just("stake"), st.integers(0, 2), st.sampled_from([1, MIN_STAKE])),
    st.tuples(st.just("request_unstake"), st.integers(0, 2)),
    st.tuples(st.just("withdraw_stake"), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("slash"), st.integers(0, 2), st.integers(0, 6)),
    st.tuples(st.just("refund_by_operator"), st.integers(0, 20)),
    st.tuples(st.just("refund_by_buyer"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("withdraw"), st.integers(0, 6)),
    st.tuples(st.just("withdraw_fees")),
    st.tuples(st.just("set_fees"), st.integers(0, 10**15), st.integers(0, 2_000)),
    st.tuples(st.just("set_price"), st.integers(1, 3), st.integers(0, 10**17)),
)


@dataclass
class Model:
    """What the escrow should owe, kept by the test independently of the contract."""

    jobs: dict[tuple, tuple] = field(default_factory=dict)  # (buyer, id) -> Job tuple
    state: dict[tuple, int] = field(default_factory=dict)  # -> 1 funded / 2 settled / 3 refunded
    balances: dict[str, int] = field(default_factory=dict)
    fees_held: int = 0
    stakes: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)  # validator -> 0 none / 1 / 2 / 3
    available_at: dict[str, int] = field(default_factory=dict)
    burned: int = 0

    def counts(self, validator: str) -> bool:
        """Whether the validator's attestation counts (the escrow's isValidator)."""
        status = self.status.get(validator, 0)
        return status in (ACTIVE, LEAVING) and self.stakes.get(validator, 0) >= MIN_STAKE

    def credit(self, account: str, amount: int) -> None:
        self.balances[account] = self.balances.get(account, 0) + amount

    def pick(self, index: int) -> tuple | None:
        ids = list(self.jobs)
        return ids[index % len(ids)] if ids else None


def check_invariant(market: Market, model: Model, accounts: list[str]) -> None:
    escrow = market.escrow.functions
    balances = {a: escrow.balanceOf(a).call() for a in accounts}
    assert balances == {a: model.balances.get(a, 0) for a in accounts}
    assert escrow.feesHeld().call() == model.fees_held
    for (buyer, job_id), state in model.state.items():
        assert escrow.jobState(buyer, job_id).call() == state
    for validator in model.status:
        assert escrow.validatorOf(validator).call() == [
            model.stakes.get(validator, 0),
            model.status[validator],
            model.available_at.get(validator, 0),
        ]
        assert escrow.isValidator(validator).call() is model.counts(validator)
    assert escrow.stakeBurned().call() == model.burned
    funded = sum(job[2] for key, job in model.jobs.items() if model.state[key] == 1)
    assert market.chain.balance(market.escrow.address) == (
        sum(balances.values())
        + funded
        + model.fees_held
        + sum(model.stakes.values())
        + model.burned
    )


def run(market: Market, steps: list[tuple]) -> None:
    a = market.actors
    chain, escrow = market.chain, market.escrow.functions
    buyers = [a.buyer.address, a.stranger.address, a.carol.address]
    payees = [a.alice.address, a.bob.address, a.carol.address, a.stranger.address]
    validators = market.validators  # ascending
    accounts = sorted(
        set(
            buyers
            + payees
            + [a.admin.address, a.operator.address]
            + [v.address for v in validators]
        )
    )
    operator, admin = a.operator.address, a.admin.address
    model = Model()
    for validator in validators:  # staked by the fixture
        model.stakes[validator.address], model.status[validator.address] = MIN_STAKE, ACTIVE

    for number, step in enumerate(steps):
        kind = step[0]
        if kind == "fund":
            _, buyer_index, dataset_ids = step
            _, job = market.fund(keccak(text=f"job {number}"), dataset_ids, buyers[buyer_index])
            model.jobs[job[1], job[0]], model.state[job[1], job[0]] = job, 1
        elif kind == "fund_taken_id":
            key = model.pick(step[1])
            buyer = buyers[step[2]]
            if key is None or (buyer, key[1]) in model.jobs:
                continue
            _, job = market.fund(key[1], step[3], buyer)
            model.jobs[buyer, key[1]], model.state[buyer, key[1]] = job, 1
        elif kind == "settle":
            key = model.pick(step[1])
            if key is None:
                continue
            job, weights = model.jobs[key], step[2]
            # One amount per dataset, credited to the owner committed at funding.
            weights = (weights * len(job[5]))[: len(job[5])]
            to_payees = job[2] - job[3]
            total_weight = sum(weights) or 1
            amounts = [to_payees * w // total_weight for w in weights]
            amounts[0] += to_payees - sum(amounts)
            signers = [v for i, v in enumerate(validators) if step[3] >> i & 1]
            call = market.settle_call(job, amounts, signers=signers)
            invalid = [v.address for v in signers if not model.counts(v.address)]
            if model.state[key] != 1:
                chain.reverts(call, operator, "JobNotFunded", key[1])
                continue
            if len(signers) < QUORUM:
                chain.reverts(call, operator, "QuorumNotReached", len(signers), QUORUM)
                continue
            if invalid:
                chain.reverts(call, operator, "NotAValidator", invalid[0])
                continue
            chain.transact(call, operator)
            model.state[key] = 2
            for payee, amount in zip(job[6], amounts, strict=True):
                model.credit(payee, amount)
            share = job[3] * VALIDATOR_FEE_BPS // 10_000 // len(signers)
            for validator in signers:
                model.credit(validator.address, share)
            model.fees_held += job[3] - share * len(signers)
        elif kind in ("refund_by_operator", "refund_by_buyer"):
            key = model.pick(step[1])
            if key is None:
                continue
            job_id, job = key[1], model.jobs[key]
            sender = operator if kind == "refund_by_operator" else job[1]
            if kind == "refund_by_buyer" and step[2]:
                chain.increase_time(REFUND_DELAY)
            call = escrow.refund(job)
            if model.state[key] != 1:
                chain.reverts(call, sender, "JobNotFunded", job_id)
                continue
            if sender != operator and chain.timestamp() + 1 < job[4]:
                chain.reverts(call, sender, "RefundNotYetAllowed", job[4])
                continue
            chain.transact(call, sender)
            model.state[key] = 3
            model.credit(job[1], job[2])
        elif kind == "withdraw":
            account = accounts[step[1] % len(accounts)]
            if model.balances.get(account, 0) == 0:
                chain.reverts(escrow.withdraw(), account, "NothingToWithdraw")
                continue
            receipt = chain.transact(escrow.withdraw(), account)
            assert (
                events(market.escrow, receipt, "Withdrawn")[0]["amount"] == model.balances[account]
            )
            model.balances[account] = 0
        elif kind == "withdraw_fees":
            if model.fees_held == 0:
                chain.reverts(escrow.withdrawFees(admin), admin, "NothingToWithdraw")
                continue
            chain.transact(escrow.withdrawFees(admin), admin)
            model.fees_held = 0
        elif kind == "set_fees":
            chain.transact(escrow.setFees(step[1], step[2]), admin)
        elif kind == "stake":
            validator, value = validators[step[1]].address, step[2]
            status = model.status[validator]
            call = escrow.stake()
            if status == REMOVED:
                chain.reverts(call, validator, "ValidatorRemoved", value=value)
                continue
            if status == LEAVING:
                chain.reverts(call, validator, "UnstakePending", value=value)
                continue
            staked = model.stakes[validator] + value
            if staked < MIN_STAKE:
                chain.reverts(call, validator, "StakeTooLow", MIN_STAKE, staked, value=value)
                continue
            chain.transact(call, validator, value)
            model.stakes[validator], model.status[validator] = staked, ACTIVE
        elif kind == "request_unstake":
            validator = validators[step[1]].address
            status = model.status[validator]
            errors = {REMOVED: "ValidatorRemoved", LEAVING: "UnstakePending", 0: "NotStaked"}
            if status in errors:
                chain.reverts(escrow.requestUnstake(), validator, errors[status])
                continue
            receipt = chain.transact(escrow.requestUnstake(), validator)
            timestamp = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
            model.status[validator] = LEAVING
            model.available_at[validator] = timestamp + UNBONDING_DELAY
        elif kind == "withdraw_stake":
            validator = validators[step[1]].address
            if step[2]:
                chain.increase_time(UNBONDING_DELAY)
            status = model.status[validator]
            if status == REMOVED:
                chain.reverts(escrow.withdrawStake(), validator, "ValidatorRemoved")
                continue
            if status != LEAVING:
                chain.reverts(escrow.withdrawStake(), validator, "UnstakeNotRequested")
                continue
            available_at = model.available_at[validator]
            if chain.timestamp() + 1 < available_at:
                chain.reverts(escrow.withdrawStake(), validator, "UnbondingNotOver", available_at)
                continue
            receipt = chain.transact(escrow.withdrawStake(), validator)
            assert (
                events(market.escrow, receipt, "StakeWithdrawn")[0]["amount"]
                == (model.stakes[validator])
            )
            model.stakes[validator], model.status[validator] = 0, 0
            model.available_at[validator] = 0
        elif kind == "slash":
            signer, reporter = validators[step[1]], accounts[step[2] % len(accounts)]
            job_id, payouts = keccak(text=f"equivocation {number}"), b"\x01" * 32
            first, second = keccak(text="report 1"), keccak(text="report 2")
            call = escrow.slash(
                job_id, first, payouts,
                sign_attestation(signer, market.escrow.address, job_id, first, payouts),
                second, payouts,
                sign_attestation(signer, market.escrow.address, job_id, second, payouts),
            )  # fmt: skip
            stake = model.stakes[signer.address]
            if stake == 0 or model.status[signer.address] == REMOVED:
                chain.reverts(call, reporter, "NothingToSlash", signer.address)
                continue
            chain.transact(call, reporter)
            reward = stake * SLASH_REWARD_BPS // 10_000
            model.credit(reporter, reward)
            model.burned += stake - reward
            model.stakes[signer.address], model.status[signer.address] = 0, REMOVED
            model.available_at[signer.address] = 0
        elif kind == "set_price":
            owner = market.registry.functions.getListing(step[1]).call()[0]
            chain.transact(market.registry.functions.setPrice(step[1], step[2]), owner)
        check_invariant(market, model, accounts)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=fund_operations, rest=st.lists(operations, max_size=11))
def test_escrow_balance_always_covers_what_it_owes(market: Market, first: tuple, rest: list[tuple]):
    if market.registry.functions.listingCount().call() == 0:
        for owner, price in zip(
            (market.actors.alice, market.actors.bob, market.actors.carol),
            DATASET_PRICES,
            strict=True,
        ):
            market.list_dataset(owner.address, price)
    snapshot = market.chain.snapshot()
    try:
        run(market, [first, *rest])
    finally:
        market.chain.revert_to(snapshot)
