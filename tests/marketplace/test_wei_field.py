"""Wei amounts are exact on SQLite and PostgreSQL alike, and compare like numbers."""

import pytest
from django.core.exceptions import ValidationError

from chain.models import ChainTransaction
from marketplace.fields import MAX_WEI, WeiField

pytestmark = pytest.mark.django_db

AMOUNTS = [0, 7, 21991589755624894, 10**18 + 1, 2**128 + 3, MAX_WEI]


def make(value: int, n: int) -> ChainTransaction:
    return ChainTransaction.objects.create(
        chain_id=31337, intent=f"wei-{n}", sender="0x" + "11" * 20, nonce=n, raw="0x",
        tx_hash="0x" + f"{n:064x}", value_wei=value,
    )  # fmt: skip


def test_amounts_read_back_exactly():
    for n, value in enumerate(AMOUNTS):
        make(value, n)

    stored = list(ChainTransaction.objects.order_by("nonce").values_list("value_wei", flat=True))

    assert stored == AMOUNTS
    assert all(type(v) is int for v in stored)


def test_amounts_order_and_compare_as_numbers():
    for n, value in enumerate([10**18, 9, 2**200, 10]):
        make(value, n)

    ordered = list(
        ChainTransaction.objects.order_by("value_wei").values_list("value_wei", flat=True)
    )
    cheap = set(
        ChainTransaction.objects.filter(value_wei__lte=10).values_list("value_wei", flat=True)
    )

    assert ordered == [9, 10, 10**18, 2**200]
    assert cheap == {9, 10}


@pytest.mark.parametrize("bad", [-1, MAX_WEI + 1, "1.5", "ten", 1.5])
def test_values_that_are_not_wei_are_refused(bad):
    with pytest.raises(ValidationError):
        WeiField().to_python(bad)
