from hypothesis import given, settings
from hypothesis import strategies as st

from training.payouts import payees_and_amounts, payouts_for

ALICE, BOB, CAROL = "0xA11ce", "0xB0b", "0xCa401"


def test_better_data_is_paid_more_and_the_sum_is_exact():
    payouts = payouts_for(
        distributable_wei=1_000_000,
        datasets=[(1, ALICE, 100), (2, BOB, 100)],
        contributions={1: 0.30, 2: 0.10},
    )

    amounts = {p.dataset_id: p.amount_wei for p in payouts}
    # base 500,000 split 1:1, contribution 500,000 split 3:1
    assert amounts == {1: 250_000 + 375_000, 2: 250_000 + 125_000}
    assert sum(amounts.values()) == 1_000_000


def test_negative_contribution_earns_only_the_base_share():
    payouts = payouts_for(
        distributable_wei=1_000,
        datasets=[(1, ALICE, 300), (2, BOB, 100)],
        contributions={1: 0.4, 2: -0.2},
    )

    amounts = {p.dataset_id: p.amount_wei for p in payouts}
    assert amounts[2] == 125  # a quarter of the 500 wei base share, nothing of the rest
    assert amounts[1] == 375 + 500


def test_no_positive_contribution_splits_everything_by_price():
    payouts = payouts_for(
        distributable_wei=10, datasets=[(1, ALICE, 1), (2, BOB, 1)], contributions={1: -1, 2: 0}
    )

    assert [p.amount_wei for p in payouts] == [5, 5]


def test_an_owner_of_two_datasets_is_credited_once():
    payouts = payouts_for(
        distributable_wei=99,
        datasets=[(1, ALICE, 1), (2, BOB, 1), (3, ALICE, 1)],
        contributions={1: 1, 2: 1, 3: 1},
    )

    payees, amounts = payees_and_amounts(payouts)

    assert payees == [ALICE, BOB]
    assert sum(amounts) == 99


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(min_value=0, max_value=10**24),
    prices=st.lists(st.integers(min_value=0, max_value=10**21), min_size=1, max_size=8),
    contributions=st.lists(
        st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=8, max_size=8
    ),
)
def test_amounts_always_sum_to_the_distributable_wei(total, prices, contributions):
    datasets = [(i, [ALICE, BOB, CAROL][i % 3], price) for i, price in enumerate(prices)]

    payouts = payouts_for(
        distributable_wei=total,
        datasets=datasets,
        contributions={i: contributions[i] for i in range(len(prices))},
    )

    assert sum(p.amount_wei for p in payouts) == total
    assert all(p.amount_wei >= 0 for p in payouts)
