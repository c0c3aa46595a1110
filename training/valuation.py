"""Data valuation: how much each dataset helped the model.

Method: KNN-Shapley (Jia et al., "Efficient task-specific data valuation for nearest neighbor
algorithms", VLDB 2019). For a K-nearest-neighbour surrogate of the model, the Shapley value of
every training row has an exact closed form, computed per test point in O(N log N) by sorting the
training rows by distance and applying the recursion

    s[N] = u[N] / N
    s[i] = s[i+1] + (u[i] - u[i+1]) / K * min(K, i) / i          (rows ordered nearest first)

where u[i] is the row's utility for the test point: 1 if its label equals the test label, else 0
(classification), or minus the absolute error between its target and the test target in units of
the target's standard deviation (regression). Row values are averaged over test points and summed
per dataset. By the Shapley efficiency property the datasets' contributions add up to the
surrogate's score on the test split (its soft accuracy for classification); a dataset that pulls
predictions the wrong way (e.g. mislabelled rows) gets a low or negative contribution.

Rows live in the feature space of the run's fitted preprocessing (imputed, scaled, one-hot), so the
surrogate sees what the model sees. Train and test rows are subsampled with the run's seed, which
keeps the cost small next to the fit and makes the result deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHOD = "knn-shapley"
K_NEIGHBOURS = 10
MAX_TRAIN_ROWS = 4000
MAX_TEST_ROWS = 500


@dataclass(frozen=True)
class Valuation:
    method: str
    k: int
    train_rows_used: int
    test_rows_used: int
    contributions: dict[int, float]  # dataset id -> contribution


def _utilities(train_y: np.ndarray, test_y: np.ndarray, task: str, scale: float) -> np.ndarray:
    """u[t, i]: how much training row i helps test point t on its own."""
    if task == "classification":
        return (train_y[None, :] == test_y[:, None]).astype(np.float64)
    return -np.abs(train_y[None, :].astype(float) - test_y[:, None].astype(float)) / scale


def knn_shapley(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    task: str,
    k: int,
) -> np.ndarray:
    """Exact KNN-Shapley value of each training row, averaged over the test points."""
    n = len(train_x)
    scale = float(np.std(train_y.astype(float))) if task == "regression" else 1.0
    scale = scale or 1.0
    values = np.zeros(n)
    # Test points in blocks, to bound the distance matrix's memory.
    for start in range(0, len(test_x), 128):
        block_x, block_y = test_x[start : start + 128], test_y[start : start + 128]
        distances = (
            np.sum(block_x**2, axis=1)[:, None]
            - 2 * block_x @ train_x.T
            + np.sum(train_x**2, axis=1)[None, :]
        )
        order = np.argsort(distances, axis=1, kind="stable")
        utility = np.take_along_axis(_utilities(train_y, block_y, task, scale), order, axis=1)
        shapley = np.zeros_like(utility)
        shapley[:, n - 1] = utility[:, n - 1] / n
        for i in range(n - 2, -1, -1):  # i is 0-based: rank i + 1
            rank = i + 1
            shapley[:, i] = (
                shapley[:, i + 1] + (utility[:, i] - utility[:, i + 1]) / k * min(k, rank) / rank
            )
        np.add.at(values, order.ravel(), shapley.ravel())
    return values / len(test_x)


def value_datasets(
    *,
    train_x: np.ndarray,
    train_y: np.ndarray,
    train_dataset: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    task: str,
    seed: int,
) -> Valuation:
    """Per-dataset contributions; `train_dataset[i]` is the dataset id of training row i."""
    rng = np.random.default_rng(seed)
    dataset_ids = sorted(int(d) for d in np.unique(train_dataset))
    # Stratified by dataset: each dataset keeps its share of the sample.
    fraction = min(1.0, MAX_TRAIN_ROWS / len(train_x))
    chosen = []
    for dataset_id in dataset_ids:
        rows = np.flatnonzero(train_dataset == dataset_id)
        take = min(len(rows), max(1, round(len(rows) * fraction)))
        chosen.append(np.sort(rng.choice(rows, size=take, replace=False)))
    train_rows = np.concatenate(chosen)
    test_rows = np.sort(
        rng.choice(len(test_x), size=min(MAX_TEST_ROWS, len(test_x)), replace=False)
    )

    row_values = knn_shapley(
        train_x[train_rows], train_y[train_rows], test_x[test_rows], test_y[test_rows],
        task=task, k=K_NEIGHBOURS,
    )  # fmt: skip
    owners = train_dataset[train_rows]
    contributions = {
        dataset_id: float(row_values[owners == dataset_id].sum()) for dataset_id in dataset_ids
    }
    return Valuation(METHOD, K_NEIGHBOURS, len(train_rows), len(test_rows), contributions)
