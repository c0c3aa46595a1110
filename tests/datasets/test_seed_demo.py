"""The demo data a fresh development stack starts with."""

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from chain.wrappers import DatasetRegistry
from datasets.models import Dataset
from tests.datasets.factories import DEV_ADDRESSES

pytestmark = pytest.mark.django_db


def test_seed_demo_lists_real_datasets_in_shards_of_three_dev_accounts(
    contracts, ipfs_node, anonymous_api
):
    call_command("seed_demo")

    listed = Dataset.objects.filter(status=Dataset.Status.LISTED).select_related("owner")
    assert listed.count() == 9
    assert {d.owner.address for d in listed} == set(DEV_ADDRESSES.values())
    rows = {d.title: d.rows for d in listed}
    assert rows["Wine cultivars (chemical analysis), part 1 of 3"] == 60
    assert sum(r for t, r in rows.items() if t.startswith("Breast cancer")) == 569
    assert sum(r for t, r in rows.items() if t.startswith("Diabetes")) == 442
    noisy = [d for d in listed if "noisy" in d.tags]
    assert [d.title for d in noisy] == [
        "Breast cancer diagnostics (Wisconsin), part 3 of 3 (noisy)"
    ]

    registry = DatasetRegistry.deployed()
    for dataset in listed:
        listing = registry.listing(dataset.listing_id)
        assert (listing.owner, listing.price_wei) == (dataset.owner.address, int(dataset.price_wei))
    assert anonymous_api.get("/api/datasets", {"search": "cultivar"}).json()["count"] == 3
    diabetes = listed.get(title__startswith="Diabetes", title__contains="part 1")
    flagged = {w.get("column") for w in diabetes.quality_warnings if w["code"] == "personal_data"}
    assert flagged == {"age", "sex"}


@override_settings(CHAIN_ID=1)
def test_seed_demo_refuses_any_chain_but_the_dev_chain():
    with pytest.raises(CommandError, match="runs on the dev chain 31337 only, not on chain 1"):
        call_command("seed_demo")
    assert not Dataset.objects.exists()
