"""The figures of a run's public report, built from the test rows as aggregates only: every number
covers at least `min_rows` rows (settings.PRIVACY_MIN_GROUP_ROWS), and no row's value appears.

- Regression: predicted against actual as a 2-D histogram on a fixed grid of round-numbered bins
  over the 1st-99th percentile range (values beyond it counted in the outermost bins); cells of
  fewer than `min_rows` rows are left out and their rows counted in `suppressed_rows`.
- ROC curve (binary classification): (false positive rate, true positive rate) pairs only, no
  thresholds, downsampled so each step between two points covers at least `min_rows` rows.
- Confusion matrix: a cell of fewer than `min_rows` rows is null (shown as "<k"); a class with
  fewer than `min_rows` test rows is not named.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import confusion_matrix, roc_curve
from sklearn.pipeline import Pipeline

HISTOGRAM_BINS = 10
RARE_CLASS_LABEL = "(a class of fewer than {k} test rows)"


def _nice_step(span: float, bins: int) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) of at least span / bins: edges that
    are round numbers, not values of rows."""
    raw = span / bins
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def histogram_2d(actual, predicted, *, min_rows: int, bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of (actual, predicted) pairs on one grid for both axes (so y = x is the diagonal);
    only cells of at least `min_rows` rows are reported."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    keep = np.isfinite(actual) & np.isfinite(predicted)
    actual, predicted = actual[keep], predicted[keep]
    rows = len(actual)
    if rows == 0:
        return {"type": "histogram2d", "edges": [], "cells": [], "rows": 0,
                "suppressed_rows": 0, "min_rows": min_rows}  # fmt: skip
    both = np.concatenate([actual, predicted])
    low, high = (float(v) for v in np.percentile(both, [1, 99]))
    step = _nice_step(high - low, bins)
    start = math.floor(low / step) * step
    count = max(1, min(bins + 1, math.ceil((high - start) / step)))
    edges = [round(start + i * step, 12) for i in range(count + 1)]

    def index(values: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((values - start) / step).astype(np.int64), 0, count - 1)

    grid = np.zeros((count, count), dtype=np.int64)
    np.add.at(grid, (index(actual), index(predicted)), 1)
    cells = [
        [int(i), int(j), int(grid[i, j])]
        for i, j in zip(*np.nonzero(grid >= min_rows), strict=True)
    ]
    shown = sum(c for _, _, c in cells)
    return {
        "type": "histogram2d",
        "edges": edges,  # the same bins on both axes
        "cells": cells,  # [actual bin, predicted bin, rows]
        "clipped": True,  # values beyond the edges are counted in the outermost bins
        "rows": rows,
        "suppressed_rows": rows - shown,
        "min_rows": min_rows,
    }


def roc_points(is_positive, scores, *, min_rows: int) -> list[list[float]]:
    """(fpr, tpr) pairs, each step between two kept points covering at least `min_rows` rows."""
    truth = np.asarray(is_positive, dtype=bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return [[0.0, 0.0], [1.0, 1.0]]
    fpr, tpr, _thresholds = roc_curve(truth, scores)  # the thresholds are scores of rows: dropped
    rows_at = fpr * negatives + tpr * positives  # rows at or above each threshold
    kept = [0]
    for n in range(1, len(fpr)):
        if rows_at[n] - rows_at[kept[-1]] >= min_rows:
            kept.append(n)
    last = len(fpr) - 1
    if kept[-1] != last:
        if len(kept) > 1 and rows_at[last] - rows_at[kept[-1]] < min_rows:
            kept.pop()  # the tail step is too small: merge it into the one before
        kept.append(last)
    return [[round(float(fpr[n]), 4), round(float(tpr[n]), 4)] for n in kept]


def confusion(y_test, predicted, classes: list, *, min_rows: int) -> dict:
    matrix = confusion_matrix(y_test, predicted, labels=classes)
    shown = [[int(c) if c >= min_rows else None for c in row] for row in matrix]
    totals = matrix.sum(axis=1)
    labels = [
        str(label) if total >= min_rows else RARE_CLASS_LABEL.format(k=min_rows)
        for label, total in zip(classes, totals, strict=True)
    ]
    return {
        "labels": labels,
        "matrix": shown,  # null: fewer than `min_rows` rows
        "suppressed_cells": sum(1 for row in shown for c in row if c is None),
        "min_rows": min_rows,
    }


def feature_importance(pipeline: Pipeline, x_test: pd.DataFrame, y_test, seed: int) -> list:
    """Importance per original column: the model's own where it has one, else permutation
    importance on at most 1,000 test rows."""
    model = pipeline.named_steps["model"]
    names = list(pipeline.named_steps["preprocess"].get_feature_names_out())
    columns = list(x_test.columns)
    if hasattr(model, "feature_importances_") or hasattr(model, "coef_"):
        raw = (
            model.feature_importances_
            if hasattr(model, "feature_importances_")
            else np.abs(np.atleast_2d(model.coef_)).mean(axis=0)
        )
        per_column = dict.fromkeys(columns, 0.0)
        for name, value in zip(names, raw, strict=True):
            owner = next((c for c in columns if name == c or name.startswith(f"{c}_")), name)
            per_column[owner] = per_column.get(owner, 0.0) + float(value)
    else:
        rows = x_test.iloc[:1000]
        result = permutation_importance(
            pipeline, rows, np.asarray(y_test)[: len(rows)], n_repeats=3, random_state=seed
        )
        per_column = {c: float(v) for c, v in zip(columns, result.importances_mean, strict=True)}
    ranked = sorted(per_column.items(), key=lambda item: -item[1])[:20]
    return [{"feature": name, "importance": round(value, 6)} for name, value in ranked]


def run_figures(
    pipeline: Pipeline,
    x_test: pd.DataFrame,
    y_test,
    predicted,
    *,
    task: str,
    seed: int,
    min_rows: int,
) -> dict:
    """The report's figures for a fitted pipeline and its test rows."""
    from training.catalog import CLASSIFICATION

    k = min_rows
    figures: dict = {}
    if task == CLASSIFICATION:
        classes = list(pipeline.classes_)
        if len(classes) == 2:
            proba = pipeline.predict_proba(x_test)
            figures["roc_curve"] = roc_points(
                np.asarray(y_test) == classes[1], proba[:, 1], min_rows=k
            )
        figures["confusion_matrix"] = confusion(y_test, predicted, classes, min_rows=k)
    else:
        figures["predicted_vs_actual"] = histogram_2d(y_test, predicted, min_rows=k)
    figures["feature_importance"] = feature_importance(pipeline, x_test, y_test, seed)
    return figures
