"""The public valuation report and the run API hold aggregates over at least
PRIVACY_MIN_GROUP_ROWS rows: no row's target value, no histogram cell, ROC step or confusion
cell of fewer rows."""

import json
import re

import numpy as np
import pytest
from django.conf import settings
from sklearn.datasets import load_diabetes

from marketplace.ipfs import iter_cat, raw_cid_for_sha256
from tests.training.conftest import list_frame, pay_and_index, wait_for_run
from training import figures

K = settings.PRIVACY_MIN_GROUP_ROWS


def _mentions(text: str, value: float) -> bool:
    number = re.escape(repr(round(value, 6)))
    return re.search(rf"(?<![\d.]){number}(?![\d])", text) is not None


@pytest.mark.django_db(transaction=True)
def test_the_pinned_report_and_the_run_api_hold_no_target_value_of_a_row(
    buyer_api, contracts, ipfs_node, celery_worker, tmp_path
):
    frame = load_diabetes(as_frame=True).frame
    # Every row's target is a value no other row holds (and no round number a bin edge could be).
    frame["target"] = frame["target"] + 0.5 + np.arange(len(frame)) / 10_000
    frame.loc[0, "target"] = 987654.321
    dataset = list_frame(frame, account=3, title="Diabetes distinct", price_wei=10**16,
                         tmp_path=tmp_path)  # fmt: skip
    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [dataset.pk], "target_column": "target", "model": "ridge", "seed": 4},
        format="json",
    ).json()
    pay_and_index(body["escrow"])
    run = wait_for_run(body["id"], "completed", "failed")
    assert run.status == "completed", run.error

    pinned = b"".join(iter_cat(raw_cid_for_sha256(run.report_hash[2:]))).decode()
    api = buyer_api.get(f"/api/training-runs/{run.pk}").content.decode()
    for text in (pinned, api):
        leaked = [v for v in frame["target"] if _mentions(text, float(v))]
        assert leaked == [], f"{len(leaked)} target values of rows appear, e.g. {leaked[:3]}"
        assert "987654" not in text

    histogram = json.loads(pinned)["figures"]["predicted_vs_actual"]
    assert histogram["type"] == "histogram2d"
    assert histogram["min_rows"] == K
    assert all(count >= K for _, _, count in histogram["cells"])
    shown = sum(count for _, _, count in histogram["cells"])
    assert shown + histogram["suppressed_rows"] == histogram["rows"] > 0


def test_a_histogram_leaves_out_cells_of_fewer_rows_and_counts_them():
    rng = np.random.default_rng(0)
    actual = rng.normal(100, 10, 500)
    predicted = actual + rng.normal(0, 3, 500)
    actual[0], predicted[0] = 123456.789, 5.0  # one row far from the others
    result = figures.histogram_2d(actual, predicted, min_rows=20)

    assert all(c >= 20 for _, _, c in result["cells"])
    assert result["suppressed_rows"] >= 1
    assert sum(c for _, _, c in result["cells"]) + result["suppressed_rows"] == 500
    text = json.dumps(result)
    assert "123456" not in text
    assert not any(_mentions(text, float(v)) for v in np.concatenate([actual, predicted]))


def test_each_roc_step_covers_at_least_k_rows_and_no_threshold_is_reported():
    rng = np.random.default_rng(1)
    truth = rng.random(300) < 0.4
    scores = np.clip(truth * 0.3 + rng.random(300) * 0.7, 0, 1)
    points = figures.roc_points(truth, scores, min_rows=20)

    positives, negatives = int(truth.sum()), int((~truth).sum())
    assert points[0] == [0.0, 0.0] and points[-1] == [1.0, 1.0]
    steps = [
        round((f2 - f1) * negatives + (t2 - t1) * positives)
        for (f1, t1), (f2, t2) in zip(points, points[1:], strict=False)
    ]
    assert all(step >= 20 for step in steps), steps
    assert all(len(p) == 2 for p in points)


def test_confusion_cells_and_classes_of_fewer_than_k_rows_are_withheld():
    y_test = np.array(["a"] * 60 + ["b"] * 40 + ["rare"] * 3)
    predicted = np.array(["a"] * 55 + ["b"] * 5 + ["b"] * 40 + ["a"] * 3)
    result = figures.confusion(y_test, predicted, ["a", "b", "rare"], min_rows=20)

    assert result["matrix"][0] == [55, None, None]
    assert result["matrix"][1] == [None, 40, None]
    assert result["matrix"][2] == [None, None, None]
    assert "rare" not in json.dumps(result)
    assert result["suppressed_cells"] == 7
