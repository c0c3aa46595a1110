import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from training.ml import CLASSIFICATION, REGRESSION, fit_and_score, infer_task
from training.valuation import value_datasets


def shards(frame: pd.DataFrame, count: int, seed: int = 0) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    return [frame.iloc[part].reset_index(drop=True) for part in np.array_split(order, count)]


def test_task_is_inferred_from_the_target():
    assert infer_task(pd.Series(["a", "b", "a"])) == CLASSIFICATION
    assert infer_task(pd.Series([0, 1, 1, 0])) == CLASSIFICATION
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == REGRESSION


@pytest.mark.parametrize(
    "model", ["logistic_regression", "random_forest", "hist_gradient_boosting"]
)
def test_classification_models_fit_and_score(model):
    frame = load_breast_cancer(as_frame=True).frame

    result = fit_and_score(
        frame, target="target", task=CLASSIFICATION, model=model, test_fraction=0.25, seed=7
    )

    assert result.metrics["accuracy"] > 0.85
    assert set(result.metrics) == {"accuracy", "f1", "roc_auc", "log_loss"}
    assert result.figures["confusion_matrix"]["labels"] == ["0", "1"]
    assert len(result.figures["feature_importance"]) > 0
    assert result.figures["roc_curve"][0] == [0.0, 0.0]


@pytest.mark.parametrize("model", ["ridge", "random_forest", "hist_gradient_boosting"])
def test_regression_models_fit_and_score(model):
    frame = load_diabetes(as_frame=True).frame

    result = fit_and_score(
        frame, target="target", task=REGRESSION, model=model, test_fraction=0.25, seed=7
    )

    assert result.metrics["r2"] > 0.2
    assert set(result.metrics) == {"r2", "mae", "rmse"}
    assert len(result.figures["predicted_vs_actual"]) > 0


def test_categorical_columns_and_missing_values_are_handled():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", None], 400),
            "size": np.where(rng.random(400) < 0.1, np.nan, rng.normal(size=400)),
        }
    )
    frame["label"] = np.where(frame["colour"] == "red", "yes", "no")

    result = fit_and_score(
        frame,
        target="label",
        task=CLASSIFICATION,
        model="random_forest",
        test_fraction=0.25,
        seed=1,
    )

    assert result.metrics["accuracy"] > 0.9
    assert result.figures["feature_importance"][0]["feature"] == "colour"


def _valuation(frame, target, task, noisy_index, seed):
    parts = shards(frame, 3)
    rng = np.random.default_rng(99)
    parts[noisy_index][target] = rng.permutation(parts[noisy_index][target].to_numpy())
    combined = pd.concat([p.assign(_dataset=i + 1) for i, p in enumerate(parts)], ignore_index=True)
    result = fit_and_score(
        combined.drop(columns="_dataset"), target=target, task=task, model="random_forest",
        test_fraction=0.25, seed=seed,
    )  # fmt: skip
    transform = result.pipeline.named_steps["preprocess"].transform
    features = combined.drop(columns=[target, "_dataset"])
    train, test = result.train_index, result.test_index
    return value_datasets(
        train_x=transform(features.iloc[train]),
        train_y=combined[target].to_numpy()[train],
        train_dataset=combined["_dataset"].to_numpy()[train],
        test_x=transform(features.iloc[test]),
        test_y=combined[target].to_numpy()[test],
        task=task,
        seed=seed,
    )


def test_a_shard_with_shuffled_labels_contributes_least_in_classification():
    frame = load_breast_cancer(as_frame=True).frame

    valuation = _valuation(frame, "target", CLASSIFICATION, noisy_index=1, seed=3)

    contributions = valuation.contributions
    assert min(contributions, key=contributions.get) == 2
    assert contributions[2] < 0.5 * min(contributions[1], contributions[3])


def test_a_shard_with_shuffled_targets_contributes_least_in_regression():
    frame = load_diabetes(as_frame=True).frame

    valuation = _valuation(frame, "target", REGRESSION, noisy_index=0, seed=3)

    contributions = valuation.contributions
    assert min(contributions, key=contributions.get) == 1


def test_valuation_is_deterministic_for_a_seed():
    frame = load_breast_cancer(as_frame=True).frame

    first = _valuation(frame, "target", CLASSIFICATION, noisy_index=0, seed=11)
    second = _valuation(frame, "target", CLASSIFICATION, noisy_index=0, seed=11)

    assert first.contributions == second.contributions
