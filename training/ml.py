"""The scikit-learn side of a training run: task inference, the pipeline, fitting and scoring,
and the figures the run page plots. No I/O here: the run's pipeline feeds it decrypted frames."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training import catalog, privacy, valuation
from training import features as privacy_features
from training.catalog import (  # noqa: F401 - re-exported for callers of the ML module
    CLASSIFICATION,
    MAX_CLASSES_FOR_INTEGER_TARGET,
    MODELS,
    REGRESSION,
)
from training.figures import run_figures


def infer_task(target: pd.Series) -> str:
    values = target.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return CLASSIFICATION
    if pd.api.types.is_integer_dtype(values) or (values == values.round()).all():
        if values.nunique() <= MAX_CLASSES_FOR_INTEGER_TARGET:
            return CLASSIFICATION
    return REGRESSION


def estimator(task: str, model: str, seed: int, min_leaf_rows: int = 1):
    """The run's unfitted estimator."""
    # Every leaf summarises at least min_leaf_rows distinct rows (bootstrap copies of a row count
    # once: scikit-learn's trees count the rows with a non-zero weight).
    leaf = {"min_samples_leaf": min_leaf_rows}
    boosted_leaf = {"min_samples_leaf": max(20, min_leaf_rows)}
    if task == CLASSIFICATION:
        return {
            catalog.LOGISTIC_REGRESSION: lambda: LogisticRegression(max_iter=2000),
            catalog.RANDOM_FOREST: lambda: RandomForestClassifier(
                n_estimators=100, random_state=seed, n_jobs=1, **leaf
            ),
            catalog.HIST_GRADIENT_BOOSTING: lambda: HistGradientBoostingClassifier(
                random_state=seed, **boosted_leaf
            ),
        }[model]()
    return {
        catalog.RIDGE: lambda: Ridge(),
        catalog.RANDOM_FOREST: lambda: RandomForestRegressor(
            n_estimators=100, random_state=seed, n_jobs=1, **leaf
        ),
        catalog.HIST_GRADIENT_BOOSTING: lambda: HistGradientBoostingRegressor(
            random_state=seed, **boosted_leaf
        ),
    }[model]()


def build_pipeline(
    features: pd.DataFrame, task: str, model: str, seed: int, *, min_leaf_rows: int = 1
) -> Pipeline:
    categorical = privacy_features.categorical_columns(features)
    numeric = [c for c in features.columns if c not in categorical]
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            ),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        (
                            "encode",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=50,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline(
        [("preprocess", preprocess), ("model", estimator(task, model, seed, min_leaf_rows))]
    )


@dataclass
class FitResult:
    pipeline: Pipeline
    task: str
    metrics: dict[str, float]
    figures: dict = field(default_factory=dict)
    train_index: np.ndarray | None = None
    test_index: np.ndarray | None = None
    # The input frame's rows the model saw (rows of too rare classes are not), and the training
    # and test features as the model saw them (rare categories folded).
    rows: np.ndarray | None = None
    x_train: pd.DataFrame | None = None
    x_test: pd.DataFrame | None = None
    folded_categories: dict[str, int] = field(default_factory=dict)
    dropped_classes: int = 0
    privacy: dict = field(default_factory=dict)  # the DP mechanism (or None) and the audit
    valuation: valuation.Valuation | None = None


def split(frame: pd.DataFrame, target: str, task: str, test_fraction: float, seed: int):
    stratify = frame[target] if task == CLASSIFICATION else None
    return train_test_split(
        frame.index.to_numpy(), test_size=test_fraction, random_state=seed, stratify=stratify
    )


def _fit(pipeline, x_train, y_train, *, task: str, model: str, dp):
    """Fit in place; the DP mechanism's description (None without DP)."""
    if dp is None:
        pipeline.fit(x_train, y_train)
        return None
    return privacy.fit_private(pipeline, x_train, y_train, task=task, model=model, dp=dp)


def _curated(excluded: np.ndarray, y_train: pd.Series, task: str, min_rows: int) -> np.ndarray:
    """Curation never takes a class below `min_rows` training rows (nor away): its rows stay."""
    if task != CLASSIFICATION:
        return excluded if (~excluded).sum() >= max(min_rows, 2) else np.zeros_like(excluded)
    labels = y_train.to_numpy()
    kept = excluded.copy()
    for label in np.unique(labels):
        of_class = labels == label
        if (of_class & ~excluded).sum() < max(min_rows, 1):
            kept[of_class] = False
    return kept


def fit_and_score(
    frame: pd.DataFrame,
    *,
    target: str,
    task: str,
    model: str,
    test_fraction: float,
    seed: int,
    min_group_rows: int = 1,
    min_leaf_rows: int = 1,
    dp: privacy.DPRequest | None = None,
    owners: np.ndarray | None = None,
    credited: np.ndarray | None = None,
    curate: bool = False,
    on_valuing: Callable[[], None] = lambda: None,
) -> FitResult:
    """Fit and score; no category, class or leaf of the model stands for fewer training rows
    than `min_group_rows` / `min_leaf_rows`. `rows`, `train_index` and `test_index` of the
    result are positions in `frame`.

    With `owners` (the dataset of each row of `frame`), the training rows are valued
    (`training.valuation`) and each dataset's contribution is in `result.valuation`; rows whose
    `credited` is False are credited to another dataset. With `curate`, the rows the valuation
    finds harmful are left out of the model the buyer gets (it is fitted again without them)."""
    if curate and owners is None:
        raise ValueError("curation needs the valuation: pass the rows' owners")
    frame = frame.reset_index(drop=True).dropna(subset=[target])
    dropped_classes = 0
    if task == CLASSIFICATION:
        frame, dropped_classes = privacy_features.drop_rare_classes(
            frame, target=target, min_rows=min_group_rows, test_fraction=test_fraction
        )
    rows = frame.index.to_numpy()
    frame = frame.reset_index(drop=True)
    train_index, test_index = split(frame, target, task, test_fraction, seed)
    features = frame.drop(columns=[target])
    x_train, x_test, folded = privacy_features.fold_rare_categories(
        features.iloc[train_index], features.iloc[test_index], min_rows=min_group_rows
    )
    y_train, y_test = frame[target].iloc[train_index], frame[target].iloc[test_index]
    pipeline = build_pipeline(features, task, model, seed, min_leaf_rows=min_leaf_rows)
    described = _fit(pipeline, x_train, y_train, task=task, model=model, dp=dp)

    valued = None
    if owners is not None:
        train_owners = np.asarray(owners)[rows][train_index]
        train_credited = None if credited is None else np.asarray(credited)[rows][train_index]
        on_valuing()
        valuing_started = time.perf_counter()
        row_values = valuation.row_values(
            model=model, task=task, x=pipeline.named_steps["preprocess"].transform(x_train),
            y=y_train.to_numpy(), seed=seed, fitted=pipeline.named_steps["model"],
            min_leaf_rows=min_leaf_rows,
        )  # fmt: skip
        valuing_seconds = time.perf_counter() - valuing_started
        excluded = None
        if curate:
            excluded = _curated(valuation.harmful(row_values), y_train, task, min_group_rows)
            if excluded.any():
                x_train, y_train = x_train[~excluded], y_train[~excluded]
                train_index = train_index[~excluded]
                pipeline = build_pipeline(features, task, model, seed, min_leaf_rows=min_leaf_rows)
                described = _fit(pipeline, x_train, y_train, task=task, model=model, dp=dp)
        valued = valuation.Valuation(
            method=row_values.method,
            params=row_values.params,
            rows_valued=len(train_owners),
            contributions=valuation.dataset_contributions(
                row_values, owners=train_owners, credited=train_credited, excluded=excluded
            ),
            excluded_rows=valuation.counts_by_dataset(train_owners, excluded),
            uncredited_rows=valuation.counts_by_dataset(
                train_owners, None if train_credited is None else ~train_credited
            ),
            seconds=valuing_seconds,
        )
    predicted = pipeline.predict(x_test)
    if task == CLASSIFICATION:
        proba = pipeline.predict_proba(x_test)
        classes = list(pipeline.classes_)
        binary = len(classes) == 2
        f1 = (
            f1_score(y_test, predicted, average="binary", pos_label=classes[1])
            if binary
            else f1_score(y_test, predicted, average="macro")
        )
        metrics = {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "f1": float(f1),
            "log_loss": float(log_loss(y_test, proba, labels=classes)),
        }
        if binary:
            metrics["roc_auc"] = float(roc_auc_score(y_test == classes[1], proba[:, 1]))
        else:
            metrics["roc_auc"] = float(
                roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)
            )
    else:
        metrics = {
            "r2": float(r2_score(y_test, predicted)),
            "mae": float(mean_absolute_error(y_test, predicted)),
            "rmse": float(np.sqrt(np.mean((np.asarray(y_test) - predicted) ** 2))),
        }
    figures = run_figures(
        pipeline, x_test, y_test, predicted, task=task, seed=seed, min_rows=min_group_rows
    )
    audit = privacy.membership_inference_auc(
        pipeline, x_train, y_train, x_test, y_test, task=task, seed=seed
    )
    return FitResult(
        pipeline, task, metrics, figures, train_index, test_index,
        rows=rows, x_train=x_train, x_test=x_test,
        folded_categories=folded, dropped_classes=dropped_classes,
        privacy={"differential_privacy": described, "membership_inference_auc": audit},
        valuation=valued,
    )  # fmt: skip
