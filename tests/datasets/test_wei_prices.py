"""A listing's price keeps every wei, on SQLite as on PostgreSQL."""

import pytest

from datasets.models import Dataset
from tests.datasets.factories import user_for

pytestmark = pytest.mark.django_db


def test_a_price_with_seventeen_significant_digits_reads_back_exactly():
    price = 12345678901234567
    dataset = Dataset.objects.create(
        owner=user_for(1), title="Exact", license="MIT", price_wei=price, original_filename="x.csv"
    )

    assert Dataset.objects.get(pk=dataset.pk).price_wei == price
    assert list(Dataset.objects.filter(price_wei__lte=price).values_list("pk", flat=True)) == [
        dataset.pk
    ]
    assert not Dataset.objects.filter(price_wei__lte=price - 1).exists()
