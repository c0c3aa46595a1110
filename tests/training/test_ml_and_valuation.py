import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from training.ml import CLASSIFICATION, REGRESSION, fit_and_score, infer_task


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


def _valuation(frame, target, task, noisy_index, seed, model="random_forest"):
    parts = shards(frame, 3)
    rng = np.random.default_rng(99)
    parts[noisy_index][target] = rng.permutation(parts[noisy_index][target].to_numpy())
    combined = pd.concat(parts, ignore_index=True)
    owners = np.concatenate([np.full(len(p), i + 1) for i, p in enumerate(parts)])
    result = fit_and_score(
        combined, target=target, task=task, model=model, test_fraction=0.25, seed=seed,
        min_leaf_rows=10, owners=owners,
    )  # fmt: skip
    return result.valuation


@pytest.mark.parametrize(
    "model", ["random_forest", "hist_gradient_boosting", "logistic_regression"]
)
def test_a_shard_with_shuffled_labels_contributes_least_in_classification(model):
    frame = load_breast_cancer(as_frame=True).frame

    valuation = _valuation(frame, "target", CLASSIFICATION, noisy_index=1, seed=3, model=model)

    contributions = valuation.contributions
    assert min(contributions, key=contributions.get) == 2
    assert contributions[2] < 0.5 * min(contributions[1], contributions[3])


@pytest.mark.parametrize("model", ["random_forest", "ridge"])
def test_a_shard_with_shuffled_targets_contributes_least_in_regression(model):
    frame = load_diabetes(as_frame=True).frame

    valuation = _valuation(frame, "target", REGRESSION, noisy_index=0, seed=3, model=model)

    contributions = valuation.contributions
    assert min(contributions, key=contributions.get) == 1


def test_valuation_is_deterministic_for_a_seed():
    frame = load_breast_cancer(as_frame=True).frame

    first = _valuation(frame, "target", CLASSIFICATION, noisy_index=0, seed=11)
    second = _valuation(frame, "target", CLASSIFICATION, noisy_index=0, seed=11)

    assert first.contributions == second.contributions


def _flipped(frame: pd.DataFrame, rows: np.ndarray, target: str = "target") -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[rows, target] = 1 - frame.loc[rows, target]
    return frame


@pytest.mark.parametrize("model", ["random_forest", "hist_gradient_boosting"])
def test_curation_leaves_the_flipped_rows_out_and_they_earn_nothing(model):
    source = load_breast_cancer(as_frame=True).frame
    owners = np.where(np.arange(len(source)) < 380, 1, 2)
    rng = np.random.default_rng(5)
    flipped = rng.choice(np.flatnonzero(owners == 2), size=60, replace=False)
    frame = _flipped(source, flipped)

    plain = fit_and_score(
        frame, target="target", task=CLASSIFICATION, model=model, test_fraction=0.25, seed=2,
        min_leaf_rows=10, owners=owners,
    )  # fmt: skip
    curated = fit_and_score(
        frame, target="target", task=CLASSIFICATION, model=model, test_fraction=0.25, seed=2,
        min_leaf_rows=10, owners=owners, curate=True,
    )  # fmt: skip

    assert plain.valuation.excluded_rows == {1: 0, 2: 0}
    trained_flipped = set(flipped) & set(plain.train_index)
    left_out = set(plain.train_index) - set(curated.train_index)
    # Most flipped training rows are left out, and few of the rows left out are clean.
    assert len(left_out & trained_flipped) >= 0.8 * len(trained_flipped)
    assert len(left_out - trained_flipped) <= 0.1 * len(plain.train_index)
    assert sum(curated.valuation.excluded_rows.values()) == len(left_out)
    assert curated.valuation.excluded_rows[2] >= 0.8 * len(trained_flipped)
    # Left-out rows no longer pull the noisy dataset's contribution down.
    assert curated.valuation.contributions[2] > plain.valuation.contributions[2]
    # What this does to the model's accuracy is measured over many splits in bench/curation.py.


def test_a_row_in_two_datasets_is_credited_to_the_earliest_listing_only():
    from training.valuation import credited_to_earliest

    source = load_breast_cancer(as_frame=True).frame
    first, second = source.iloc[:300], source.iloc[300:]
    copied = first.iloc[:150]  # a later listing that copied half of the first one's rows
    combined = pd.concat([second, copied, first], ignore_index=True)
    # Listing ids: the first listing is 3, the copier 9, the other 5.
    owners = np.concatenate(
        [np.full(len(second), 5), np.full(len(copied), 9), np.full(len(first), 3)]
    )
    credited = credited_to_earliest(
        pd.util.hash_pandas_object(combined, index=False).to_numpy(), owners
    )
    assert not credited[owners == 9].any()
    assert credited[owners != 9].all()

    result = fit_and_score(
        combined, target="target", task=CLASSIFICATION, model="random_forest",
        test_fraction=0.25, seed=4, min_leaf_rows=10, owners=owners, credited=credited,
    )  # fmt: skip
    assert result.valuation.contributions[9] == 0
    assert result.valuation.contributions[3] > 0 and result.valuation.contributions[5] > 0
    assert result.valuation.uncredited_rows[9] == (owners[result.train_index] == 9).sum()


def test_a_dataset_repeating_its_own_rows_earns_no_more_for_the_repeats():
    from training.valuation import credited_to_earliest

    source = load_breast_cancer(as_frame=True).frame
    honest, padded = source.iloc[:280], source.iloc[280:]
    combined = pd.concat([honest, padded, padded, padded], ignore_index=True)
    owners = np.concatenate([np.full(len(honest), 1), np.full(3 * len(padded), 2)])
    keys = pd.util.hash_pandas_object(combined, index=False).to_numpy()

    credited = credited_to_earliest(keys, owners)

    assert credited[owners == 1].all()
    assert credited[owners == 2].sum() == len(padded)  # each of its rows once
    result = fit_and_score(
        combined, target="target", task=CLASSIFICATION, model="random_forest",
        test_fraction=0.25, seed=4, min_leaf_rows=10, owners=owners, credited=credited,
    )  # fmt: skip
    plain = fit_and_score(
        combined, target="target", task=CLASSIFICATION, model="random_forest",
        test_fraction=0.25, seed=4, min_leaf_rows=10, owners=owners,
    )  # fmt: skip
    # Without the rule the padded dataset would take most of the credit with its repeats.
    share = result.valuation.contributions[2] / sum(result.valuation.contributions.values())
    padded_share = plain.valuation.contributions[2] / sum(plain.valuation.contributions.values())
    assert padded_share > 0.7 and share < 0.6


def test_the_low_group_is_the_exact_two_means_split():
    from training.valuation import low_group

    values = np.array([0.9, 0.1, 0.85, 0.2, 0.95, 0.15, 0.8])
    assert low_group(values).tolist() == [False, True, False, True, False, True, False]
    assert not low_group(np.ones(5)).any()
