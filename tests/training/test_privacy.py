"""training/privacy.py: diffprivlib behind its shim, the DP estimators on public bounds, the
secret noise seed, and the membership-inference audit."""

import secrets
import warnings

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes

from training import privacy
from training.ml import CLASSIFICATION, REGRESSION, fit_and_score


def small_classification(rows: int = 200) -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:rows, [0, 1, 2, 3, 4, -1]]
    frame["colour"] = np.where(np.arange(len(frame)) % 3 == 0, "red", "blue")  # one-hot too
    return frame


def small_regression(rows: int = 200) -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame.iloc[:rows]


def test_the_shim_lets_diffprivlib_import_on_this_scikit_learn():
    dpl = privacy.diffprivlib()

    assert dpl.models.RandomForestClassifier and dpl.models.LogisticRegression
    assert privacy.diffprivlib() is dpl  # applied once


CASES = [
    (CLASSIFICATION, "logistic_regression", small_classification, {"classes": [0, 1]}),
    (CLASSIFICATION, "random_forest", small_classification, {"classes": [0, 1]}),
]


@pytest.mark.parametrize(("task", "model", "frame", "public"), CASES)
def test_each_dp_estimator_fits_on_public_bounds_without_a_leak_warning(task, model, frame, public):
    from diffprivlib.utils import PrivacyLeakWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyLeakWarning)  # bounds taken from the data warn
        result = fit_and_score(
            frame(), target="target", task=task, model=model, test_fraction=0.25, seed=3,
            dp=privacy.DPRequest(epsilon=1.0, noise_seed=secrets.token_bytes(32), **public),
        )  # fmt: skip

    described = result.privacy["differential_privacy"]
    assert described["epsilon"] == 1.0
    assert described["mechanism"] == privacy.DP_VERSIONS[(task, model)]
    assert type(result.pipeline.named_steps["model"]).__module__.startswith("diffprivlib.")
    assert 0.0 <= result.privacy["membership_inference_auc"] <= 1.0
    model_bytes = sio.dumps(result.pipeline)  # what the buyer downloads keeps no noise seed
    loaded = sio.loads(model_bytes, trusted=sio.get_untrusted_types(data=model_bytes))
    assert loaded.named_steps["model"].random_state is None
    for tree in getattr(loaded.named_steps["model"], "estimators_", []):
        assert tree.random_state is None


def dp_coefficients(*, noise_seed: bytes, seed: int = 11):
    return fit_and_score(
        small_classification(), target="target", task=CLASSIFICATION,
        model="logistic_regression", test_fraction=0.25, seed=seed,
        dp=privacy.DPRequest(epsilon=1.0, noise_seed=noise_seed, classes=[0, 1]),
    ).pipeline.named_steps["model"].coef_  # fmt: skip


def test_the_noise_comes_from_the_secret_seed_not_from_the_runs_public_one():
    first, second = secrets.token_bytes(32), secrets.token_bytes(32)

    # The same public seed with other secret seeds: other noise.
    assert not np.allclose(dp_coefficients(noise_seed=first), dp_coefficients(noise_seed=second))
    # The same secret seed: the same noise (a validator handed the seed re-draws it exactly).
    assert np.array_equal(dp_coefficients(noise_seed=first), dp_coefficients(noise_seed=first))
    # Without DP the same seed gives the same model: the difference is the secret noise.
    plain = [
        fit_and_score(
            small_classification(), target="target", task=CLASSIFICATION,
            model="logistic_regression", test_fraction=0.25, seed=11,
        ).pipeline.named_steps["model"].coef_
        for _ in range(2)
    ]  # fmt: skip
    assert np.allclose(*plain)


def test_a_dp_fit_needs_a_secret_seed_of_at_least_16_bytes():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        privacy.DPRequest(epsilon=1.0, noise_seed=(11).to_bytes(4, "big"))
    assert "noise_seed" not in repr(privacy.DPRequest(epsilon=1.0, noise_seed=b"k" * 32))


def test_a_model_without_a_dp_version_is_refused():
    with pytest.raises(ValueError, match="no differentially private version"):
        fit_and_score(
            small_regression(), target="target", task=REGRESSION, model="random_forest",
            test_fraction=0.25, seed=1,
            dp=privacy.DPRequest(epsilon=1.0, noise_seed=secrets.token_bytes(32)),
        )  # fmt: skip
    assert privacy.dp_version(REGRESSION, "hist_gradient_boosting") is None
    assert privacy.dp_version(REGRESSION, "ridge") is None


def test_every_model_gets_a_membership_inference_audit():
    overfit = fit_and_score(
        small_regression(), target="target", task=REGRESSION, model="random_forest",
        test_fraction=0.5, seed=1,
    )  # fmt: skip
    assert overfit.privacy["differential_privacy"] is None
    # A forest remembers its training rows: their losses are lower than the held-out rows'.
    assert overfit.privacy["membership_inference_auc"] > 0.7


def test_public_facts_come_from_the_listings_statistics_only():
    exact = {"name": "y", "top_values_exact": True, "distinct": 2,
             "top_values": [{"value": 0, "count": 5}, {"value": 1, "count": 4}]}  # fmt: skip
    withheld = {"name": "y", "values_withheld": True}
    assert privacy.public_classes([[exact], [exact]], "y") == [0, 1]
    assert privacy.public_classes([[exact], [withheld]], "y") is None
