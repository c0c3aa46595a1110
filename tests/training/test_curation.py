"""Curation and copies in real runs: the worker trains, values and settles on anvil."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tests.training.conftest import list_frame, pay_and_index, shards, wait_for_run
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source():
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame


def commission(buyer_api, datasets, **terms):
    return buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in datasets], "target_column": "target",
         "model": "random_forest", "seed": 3, **terms},
        format="json",
    )  # fmt: skip


def test_curate_leaves_the_flipped_rows_out_and_says_how_many(
    buyer_api, source, contracts, ipfs_node, celery_worker, tmp_path
):
    clean, noisy = shards(source, 2, seed=7)
    flipped = np.random.default_rng(3).choice(len(noisy), size=50, replace=False)
    noisy.loc[flipped, "target"] = 1 - noisy.loc[flipped, "target"]
    clean_set = list_frame(clean, account=1, title="Clean", price_wei=10**16, tmp_path=tmp_path)
    noisy_set = list_frame(noisy, account=2, title="Flipped", price_wei=10**16, tmp_path=tmp_path)

    quote = commission(buyer_api, [clean_set, noisy_set], curate=True)
    assert quote.status_code == 201, quote.content
    assert quote.json()["curate"] is True
    pay_and_index(quote.json()["escrow"])
    run = wait_for_run(quote.json()["id"], "completed", "failed")
    assert run.status == "completed", run.error

    detail = buyer_api.get(f"/api/training-runs/{run.pk}").json()
    assert detail["curate"] is True
    excluded = detail["excluded_rows"]
    assert set(excluded) == {str(clean_set.pk), str(noisy_set.pk)}
    # About 37 of the 50 flipped rows are training rows (a quarter is held out for testing):
    # most are left out, and few clean rows are.
    assert excluded[str(noisy_set.pk)] >= 28
    assert excluded[str(clean_set.pk)] <= 15
    report = buyer_api.get(f"/api/training-runs/{run.pk}/report").json()
    assert report["excluded_rows"] == {  # the report names listings, not database rows
        str(clean_set.listing_id): excluded[str(clean_set.pk)],
        str(noisy_set.listing_id): excluded[str(noisy_set.pk)],
    }
    assert report["valuation"]["curate"] is True
    by_dataset = {c["dataset"]: c for c in detail["contributions"]}
    assert by_dataset[noisy_set.pk]["excluded_rows"] == excluded[str(noisy_set.pk)]
    assert (
        f"{excluded[str(noisy_set.pk)]} of its rows were left out of the model as harmful"
        in by_dataset[noisy_set.pk]["payout_explanation"]
    )
    # What the escrow paid adds up, and the noisy set's rows earned less than the clean ones.
    amounts = {d: int(c["amount_wei"]) for d, c in by_dataset.items()}
    assert sum(amounts.values()) == int(run.funded_value_wei) - int(run.fee_wei)
    assert amounts[clean_set.pk] > amounts[noisy_set.pk]


def test_curation_is_refused_with_differential_privacy(buyer_api, cancer_datasets):
    answer = commission(buyer_api, cancer_datasets, curate=True, dp_epsilon=1.0)

    assert answer.status_code == 400
    assert answer.json()["extra"]["code"] == "curate_with_dp"
    assert "choose one of curate and dp_epsilon" in answer.json()["message"]
    assert not TrainingRun.objects.exists()


def test_a_row_in_two_datasets_of_a_run_is_credited_to_the_earliest_listing(
    buyer_api, source, contracts, ipfs_node, celery_worker, tmp_path
):
    first, second = shards(source, 2, seed=9)
    original = list_frame(first, account=1, title="Original", price_wei=10**16, tmp_path=tmp_path)
    # A later listing whose few rows copied from the first are not enough to refuse it.
    copied = first.iloc[:12]
    later_frame = pd.concat([second.iloc[:200], copied], ignore_index=True)
    later = list_frame(later_frame, account=2, title="Later", price_wei=10**16, tmp_path=tmp_path)
    assert later.listing_id > original.listing_id

    quote = commission(buyer_api, [later, original])  # the run's order is not what counts
    pay_and_index(quote.json()["escrow"])
    run = wait_for_run(quote.json()["id"], "completed", "failed")
    assert run.status == "completed", run.error

    by_dataset = {
        c["dataset"]: c
        for c in buyer_api.get(f"/api/training-runs/{run.pk}").json()["contributions"]
    }
    assert by_dataset[original.pk]["uncredited_rows"] == 0
    # The copies among the training rows (some are held out for testing) earn the later listing
    # nothing: they are credited to the original.
    assert 1 <= by_dataset[later.pk]["uncredited_rows"] <= 12
    assert "repeat rows already credited" in by_dataset[later.pk]["payout_explanation"]
    report = run.report
    assert {d["listing_id"]: d["uncredited_rows"] for d in report["datasets"]} == {
        original.listing_id: 0,
        later.listing_id: by_dataset[later.pk]["uncredited_rows"],
    }
