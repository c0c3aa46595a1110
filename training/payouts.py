"""Turning measured contributions into payout amounts in wei, exactly.

The rule (documented for contributors):

- The escrow holds `value`; the platform keeps `fee`; the rest, `distributable = value - fee`, goes
  to the datasets' owners.
- Half of it (`BASE_SHARE`) is a base share, split in proportion to each dataset's price: every
  dataset used is paid something for being used.
- The other half is a contribution share, split in proportion to each dataset's positive
  contribution to the model's test score. A dataset whose contribution is zero or negative earns
  only its base share. If no dataset contributed positively, the contribution share is split like
  the base share.
- Integer wei throughout: each dataset's exact (fractional) amount is rounded down and the
  remaining wei go, one each, to the largest remainders (ties to the lower dataset position), so
  the amounts sum exactly to `distributable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

BASE_SHARE = Fraction(1, 2)


@dataclass(frozen=True)
class Payout:
    dataset_id: int
    owner: str
    contribution: float
    amount_wei: int


def _round_exactly(exact: list[Fraction]) -> list[int]:
    """Integers summing to sum(exact) (an integer): floors, then largest remainders."""
    floors = [int(x) for x in exact]
    left = int(sum(exact)) - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def payouts_for(
    *,
    distributable_wei: int,
    datasets: list[tuple[int, str, int]],
    contributions: dict[int, float],
) -> list[Payout]:
    """`datasets`: (dataset id, owner address, price in wei) in a fixed order;
    `contributions`: dataset id -> contribution to the test metric."""
    if distributable_wei < 0:
        raise ValueError("distributable amount is negative")
    if not datasets:
        raise ValueError("no datasets to pay")
    parts = payout_parts(
        distributable_wei=distributable_wei, datasets=datasets, contributions=contributions
    )
    amounts = _round_exactly(
        [parts[d].price_part_wei + parts[d].contribution_part_wei for d, _, _ in datasets]
    )
    return [
        Payout(dataset_id, owner, float(contributions.get(dataset_id, 0.0)), amount)
        for (dataset_id, owner, _), amount in zip(datasets, amounts, strict=True)
    ]


def payees_and_amounts(payouts: list[Payout]) -> tuple[list[str], list[int]]:
    """One credit per owner (an owner of several datasets is credited once), in first-seen order."""
    totals: dict[str, int] = {}
    for payout in payouts:
        totals[payout.owner] = totals.get(payout.owner, 0) + payout.amount_wei
    return list(totals), list(totals.values())


@dataclass(frozen=True)
class PayoutParts:
    """A dataset's payout split into its two halves, as fractions of each half and in wei (before
    the final rounding, which moves at most one wei)."""

    price_share: Fraction
    price_part_wei: Fraction
    contribution_share: Fraction
    contribution_part_wei: Fraction
    contributed: bool  # False: no positive contribution (its contribution half follows prices)


def payout_parts(
    *, distributable_wei: int, datasets: list[tuple[int, str, int]], contributions: dict
) -> dict[int, PayoutParts]:
    """Why each dataset was paid what it was: the rule of `payouts_for`, part by part."""
    prices = [Fraction(price) for _, _, price in datasets]
    if sum(prices) == 0:
        prices = [Fraction(1)] * len(datasets)  # free datasets: the base share is split evenly
    positive = [
        Fraction(max(contributions.get(dataset_id, 0.0) or 0.0, 0.0))
        for dataset_id, _, _ in datasets
    ]
    half = Fraction(distributable_wei) * BASE_SHARE
    by_contribution = sum(positive) > 0
    weights = positive if by_contribution else prices
    parts = {}
    for (dataset_id, _, _), price, weight in zip(datasets, prices, weights, strict=True):
        price_share, weight_share = price / sum(prices), weight / sum(weights)
        parts[dataset_id] = PayoutParts(
            price_share=price_share,
            price_part_wei=half * price_share,
            contribution_share=weight_share,
            contribution_part_wei=(Fraction(distributable_wei) - half) * weight_share,
            contributed=by_contribution and weight > 0,
        )
    return parts
