"""Property: whatever sequence of fund / settle / refund / withdraw / fee operations runs, the
escrow's ETH equals what it owes: withdrawable balances + funded-unsettled jobs + fees held; and
whoever funds another buyer's job id gets a job of its own, never the buyer's."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contracts.conftest import REFUND_DELAY, Market, events

DATASET_PRICES = (10**15, 3 * 10**15 + 7, 5 * 10**16 + 13)

dataset_sets = st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True)
fund_operations = st.tuples(st.just("fund"), st.integers(0, 2), dataset_sets)
operations = st.one_of(
    fund_operations,
    fund_operations,
    # Another buyer funds a job id already funded (e.g. a stranger copying a buyer's id).
    st.tuples(st.just("fund_taken_id"), st.integers(0, 20), st.integers(0, 2), dataset_sets),
    st.tuples(
        st.just("settle"), st.integers(0, 20), st.lists(st.integers(0, 5), min_size=1, max_size=4)
    ),
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
    funded = sum(job[2] for key, job in model.jobs.items() if model.state[key] == 1)
    assert (
        market.chain.balance(market.escrow.address)
        == sum(balances.values()) + funded + model.fees_held
    )


def run(market: Market, steps: list[tuple]) -> None:
    a = market.actors
    chain, escrow = market.chain, market.escrow.functions
    buyers = [a.buyer.address, a.stranger.address, a.carol.address]
    payees = [a.alice.address, a.bob.address, a.carol.address, a.stranger.address]
    accounts = sorted(set(buyers + payees + [a.admin.address, a.operator.address]))
    operator, admin = a.operator.address, a.admin.address
    model = Model()

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
            call = escrow.settle(job, amounts, "bafymodel", b"\x00" * 32)
            if model.state[key] != 1:
                chain.reverts(call, operator, "JobNotFunded", key[1])
                continue
            chain.transact(call, operator)
            model.state[key] = 2
            for payee, amount in zip(job[6], amounts, strict=True):
                model.credit(payee, amount)
            model.fees_held += job[3]
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
