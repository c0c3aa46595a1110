"""Differential privacy on request and the leakage audit, on the real stack: the quote refuses
what the owners' privacy terms or DP itself cannot allow before any payment, and the worker
trains privately and reports the mechanism, ε and the membership-inference AUC."""

import json

import pytest

from datasets.models import Dataset
from marketplace.ipfs import iter_cat
from tests.datasets.factories import user_for
from tests.training.conftest import cancer_like, list_file, pay_and_index, wait_for_run
from training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


def commission(api, datasets, **overrides):
    body = {
        "dataset_ids": [d.pk for d in datasets],
        "target_column": "target",
        "model": "logistic_regression",
        "seed": 3,
        **overrides,
    }
    return api.post("/api/training-runs", body, format="json")


@pytest.fixture
def private_dataset(contracts, ipfs_node, tmp_path):
    """Breast-cancer-like rows whose owner (dev account 3) requires DP with ε ≤ 0.5."""
    path = tmp_path / "private.csv"
    cancer_like(190, seed=9).to_csv(path, index=False)
    dataset = list_file(
        path, account=3, title="Cancer private", price_wei=10**16, dp_epsilon_max=0.5
    )
    return dataset


def test_a_dp_run_trains_privately_and_its_report_and_card_say_how(
    buyer_api, cancer_datasets, celery_worker
):
    quote = commission(buyer_api, cancer_datasets, dp_epsilon=1.0)
    assert quote.status_code == 201, quote.json()
    assert quote.json()["dp_epsilon"] == 1.0
    pay_and_index(quote.json()["escrow"])

    run = wait_for_run(quote.json()["id"], "completed", "failed")
    assert run.status == "completed", run.error
    detail = buyer_api.get(f"/api/training-runs/{run.pk}").json()
    assert detail["dp_epsilon"] == 1.0
    report = json.loads(buyer_api.get(f"/api/training-runs/{run.pk}/report").content)
    dp = report["differential_privacy"]
    assert dp["epsilon"] == 1.0
    assert dp["mechanism"].startswith("diffprivlib LogisticRegression: objective perturbation")
    assert dp["data_norm"] > 0 and dp["feature_bounds"] == [-3.0, 3.0]
    assert 0.0 <= report["membership_inference_auc"] <= 1.0
    assert (
        "Differential privacy: ε = 1 (δ = 0), diffprivlib LogisticRegression"
        in (detail["model_card"])
    )
    assert "Leakage audit: membership-inference AUC" in detail["model_card"]
    assert "seed" not in json.dumps(dp)  # the noise's seed is secret: nothing of it is reported


def test_a_plain_run_reports_its_membership_inference_auc(
    buyer_api, cancer_datasets, celery_worker
):
    quote = commission(buyer_api, cancer_datasets, model="random_forest")
    assert quote.status_code == 201, quote.json()
    pay_and_index(quote.json()["escrow"])

    run = wait_for_run(quote.json()["id"], "completed", "failed")
    assert run.status == "completed", run.error
    report = json.loads(buyer_api.get(f"/api/training-runs/{run.pk}/report").content)
    assert report["differential_privacy"] is None
    assert 0.0 <= report["membership_inference_auc"] <= 1.0
    card = buyer_api.get(f"/api/training-runs/{run.pk}").json()["model_card"]
    assert "Differential privacy: none" in card


def test_a_dataset_that_requires_dp_is_refused_before_payment_without_it(
    buyer_api, cancer_datasets, private_dataset
):
    metadata = json.loads(b"".join(iter_cat(private_dataset.metadata_cid)))
    assert metadata["dp_epsilon_max"] == 0.5  # the owner's terms are signed and public
    chosen = [cancer_datasets[0], private_dataset]

    for asked in ({}, {"dp_epsilon": None}, {"dp_epsilon": 1.0}):
        refused = commission(buyer_api, chosen, **asked)
        assert refused.status_code == 400, refused.json()
        body = refused.json()
        assert body["extra"]["code"] == "dp_required"
        assert "escrow" not in body
        assert f"Dataset {private_dataset.pk} (Cancer private)" in body["message"]
        assert "ε ≤ 0.5" in body["message"]
    assert not TrainingRun.objects.exists()  # nothing to pay, nothing funded

    accepted = commission(buyer_api, chosen, dp_epsilon=0.5)
    assert accepted.status_code == 201, accepted.json()
    assert TrainingRun.objects.get().dp_epsilon == 0.5


def test_a_model_without_a_dp_version_is_refused_with_a_reason(buyer_api, cancer_datasets):
    refused = commission(buyer_api, cancer_datasets, model="hist_gradient_boosting", dp_epsilon=1)

    assert refused.status_code == 400
    assert refused.json()["extra"]["code"] == "no_dp_version"
    assert (
        "hist_gradient_boosting has no differentially private version"
        in (refused.json()["message"])
    )
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("epsilon", [0, -1, 101, "1"])
def test_an_epsilon_out_of_range_is_refused(buyer_api, cancer_datasets, epsilon):
    refused = commission(buyer_api, cancer_datasets, dp_epsilon=epsilon)

    assert refused.status_code == 400
    assert refused.json()["extra"]["code"] == "bad_dp_epsilon"


def test_an_owner_requirement_out_of_range_is_refused_at_upload(db, tmp_path):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user_for(1))
    path = tmp_path / "x.csv"
    path.write_text("a,target\n1,0\n2,1\n")
    with path.open("rb") as upload:
        response = client.post(
            "/api/datasets",
            {"file": upload, "title": "x", "license": "CC0-1.0", "price_wei": "1",
             "dp_epsilon_max": "0"},
        )  # fmt: skip

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "bad_dp_epsilon"
    assert not Dataset.objects.filter(title="x").exists()
