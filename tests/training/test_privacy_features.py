"""What a model may learn from and what it may keep: identifying columns left out unless their
owner opted them in, no category or class rarer than k training rows in the model file, no tree
leaf smaller than the minimum."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from training.artifacts import model_to_bytes
from training.features import OTHER, ListedColumns, excluded_columns, fold_rare_categories
from training.ml import CLASSIFICATION, REGRESSION, fit_and_score

K = 20


def people(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    frequent = ["Lyon", "Porto", "Turku", "Graz", "Ghent"]
    city = rng.choice(frequent, size=rows).astype(object)
    city[:6] = [f"Rare-town-{i}" for i in range(6)]  # six towns of one row each
    return pd.DataFrame(
        {
            "email": [f"person{i}@example.org" for i in range(rows)],
            "customer_no": np.arange(10_000, 10_000 + rows) * 7,  # distinct integers
            "notes": [f"called on day {i}, asked about plan {i % 13}" for i in range(rows)],
            "height": np.round(rng.normal(170, 10, size=rows), 3),  # distinct floats: kept
            "city": city,
            "x": np.round(x, 4),
            "target": np.where(x + rng.normal(scale=0.5, size=rows) > 0, "yes", "no"),
        }
    )


def strings_in_model(pipeline) -> str:
    """Everything a skops file holds, decompressed: the JSON schema and every array in it."""
    archive = zipfile.ZipFile(io.BytesIO(model_to_bytes(pipeline)))
    return "\n".join(archive.read(name).decode("latin-1") for name in archive.namelist())


def test_flagged_and_row_identifying_columns_are_left_out_unless_opted_in():
    frame = people()
    listing = ListedColumns(
        title="People",
        warnings=[{"code": "personal_data", "column": "email"}],
        opted_in=frozenset(),
    )

    excluded = {
        x["column"]: x["reason"]
        for x in excluded_columns(frame, target="target", listings=[listing])
    }

    assert set(excluded) == {"email", "customer_no", "notes"}
    assert "personal data" in excluded["email"]
    assert "identifies rows" in excluded["notes"]
    opted = ListedColumns(
        title="People", warnings=listing.warnings, opted_in=frozenset({"email", "notes"})
    )
    again = excluded_columns(frame, target="target", listings=[opted])
    assert {x["column"] for x in again} == {"customer_no"}


def test_a_column_one_owner_flagged_is_left_out_even_if_another_opted_it_in():
    frame = people()[["email", "x", "target"]]
    mine = ListedColumns(
        "Mine", [{"code": "personal_data", "column": "email"}], frozenset({"email"})
    )
    theirs = ListedColumns("Theirs", [{"code": "personal_data", "column": "email"}], frozenset())

    excluded = excluded_columns(frame, target="target", listings=[mine, theirs])

    assert [x["column"] for x in excluded] == ["email"]
    assert "(Theirs)" in excluded[0]["reason"]


def test_rare_categories_fold_into_other_in_training_and_test_rows():
    frame = people()
    train, test = frame.iloc[:200], frame.iloc[200:]

    folded_train, folded_test, folded = fold_rare_categories(train, test, min_rows=K)

    assert folded["city"] == 6
    assert not folded_train["city"].str.startswith("Rare-town").any()
    assert (folded_train["city"] == OTHER).sum() == 6
    assert set(folded_test["city"]) <= set(folded_train["city"])


@pytest.mark.parametrize(
    "model", ["logistic_regression", "random_forest", "hist_gradient_boosting"]
)
def test_no_string_rarer_than_k_training_rows_is_stored_in_the_model(model):
    frame = people().drop(columns=["email", "customer_no", "notes"])

    result = fit_and_score(
        frame, target="target", task=CLASSIFICATION, model=model, test_fraction=0.25, seed=1,
        min_group_rows=K, min_leaf_rows=10,
    )  # fmt: skip

    stored = strings_in_model(result.pipeline)
    assert "Rare-town" not in stored
    assert "Lyon" in stored  # a category of many rows is a model's to keep
    trained_on = frame.iloc[result.rows[result.train_index]]["city"]
    assert result.folded_categories == {"city": trained_on.str.startswith("Rare-town").sum()}


def test_without_the_rule_the_rare_values_would_be_in_the_model():
    """The scan above can fail: with k = 1 the one-hot encoder keeps every town."""
    frame = people().drop(columns=["email", "customer_no", "notes"])

    result = fit_and_score(
        frame, target="target", task=CLASSIFICATION, model="logistic_regression",
        test_fraction=0.25, seed=1,
    )  # fmt: skip

    assert "Rare-town" in strings_in_model(result.pipeline)


def test_classes_too_rare_to_keep_k_training_rows_are_left_out():
    frame = people()[["x", "city", "target"]].copy()
    frame.loc[:4, "target"] = "secret-class"

    result = fit_and_score(
        frame, target="target", task=CLASSIFICATION, model="random_forest", test_fraction=0.25,
        seed=1, min_group_rows=K, min_leaf_rows=10,
    )  # fmt: skip

    assert result.dropped_classes == 1
    assert list(result.pipeline.classes_) == ["no", "yes"]
    assert "secret-class" not in strings_in_model(result.pipeline)
    assert len(result.rows) == len(frame) - 5


@pytest.mark.parametrize("task", [CLASSIFICATION, REGRESSION])
def test_every_tree_leaf_stands_for_at_least_the_minimum_of_rows(task):
    frame = people()[["x", "height", "city", "target"]].copy()
    if task == REGRESSION:
        frame["target"] = frame["x"] * 3 + frame["height"] / 10

    result = fit_and_score(
        frame, target="target", task=task, model="random_forest", test_fraction=0.25, seed=1,
        min_group_rows=K, min_leaf_rows=10,
    )  # fmt: skip

    smallest = min(
        tree.tree_.n_node_samples[tree.tree_.children_left == -1].min()
        for tree in result.pipeline.named_steps["model"].estimators_
    )
    assert smallest >= 10
