"""Privacy of a training run: differentially private estimators (diffprivlib, behind a small
compatibility shim for scikit-learn 1.9), the public bounds they are given, and the
membership-inference audit every model gets. The web process imports this module for the
catalogue of DP versions only: scikit-learn and diffprivlib load when a model is fitted.

What the DP guarantee covers: the estimator's fit on the preprocessed rows. Features are
standardised and then clipped to [-FEATURE_CLIP, FEATURE_CLIP] by the mechanism itself, so its
bounds are public constants; classes come from the listings' published statistics, never from
the training rows. Regression has no DP version (see DP_VERSIONS). The preprocessing (medians,
scaling, the one-hot categories) is fitted as usual and is not differentially private."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib.metadata import version

import numpy as np

from training import catalog

FEATURE_CLIP = 3.0  # standardised features are clipped to this many standard deviations
DP_FOREST_TREES = 10
DP_FOREST_DEPTH = 5
AUDIT_ROWS = 2000  # rows per side (members, non-members) the audit scores at most

# (task, model) -> what trains in its place when DP is asked for.
DP_VERSIONS = {
    (catalog.CLASSIFICATION, catalog.LOGISTIC_REGRESSION): (
        "diffprivlib LogisticRegression: objective perturbation (Chaudhuri et al. 2011), rows "
        "clipped to an L2 norm of data_norm"
    ),
    (catalog.CLASSIFICATION, catalog.RANDOM_FOREST): (
        "diffprivlib RandomForestClassifier: random trees with noisy leaf counts "
        "(Fletcher and Islam 2017), features clipped to public bounds"
    ),
}
# Regression has none: diffprivlib's LinearRegression (functional mechanism) gave R² far below
# zero on the demo diabetes set at every ε up to 5 (bench/privacy.py), a model nobody should buy.


def dp_version(task: str, model: str) -> str | None:
    return DP_VERSIONS.get((task, model))


# --- public facts about the target ---------------------------------------------------------------


def _target_column(columns: list[dict], target: str) -> dict | None:
    return next((c for c in columns if c["name"] == target), None)


def public_classes(column_lists: list[list[dict]], target: str) -> list | None:
    """The target's classes as the listings publish them (exact value counts), or None."""
    values: dict[str, object] = {}
    for columns in column_lists:
        column = _target_column(columns, target)
        if column is None or not column.get("top_values_exact") or "top_values" not in column:
            return None
        if column.get("distinct", 0) > len(column["top_values"]):
            return None
        for entry in column["top_values"]:
            values.setdefault(str(entry["value"]), entry["value"])
    return list(values.values()) or None


NOISE_SEED_MIN_BYTES = 16


@dataclass(frozen=True)
class DPRequest:
    """What a DP fit is given: the budget, the secret seed its noise is drawn from (never the
    run's public seed: whoever knew it could subtract the noise), and the target's public
    classes."""

    epsilon: float
    noise_seed: bytes = field(repr=False)
    classes: list | None = None

    def __post_init__(self):
        if len(self.noise_seed) < NOISE_SEED_MIN_BYTES:
            raise ValueError(f"a DP fit's noise seed is at least {NOISE_SEED_MIN_BYTES} bytes")


# --- diffprivlib on scikit-learn 1.9 -------------------------------------------------------------


@functools.cache
def diffprivlib():
    """diffprivlib 0.6.6 imported after the shim it needs on scikit-learn 1.9: the tree module's
    removed DOUBLE/DTYPE aliases, and LogisticRegression's removed multi_class/penalty."""
    import sklearn.linear_model
    import sklearn.tree._tree as tree

    tree.DOUBLE = getattr(tree, "DOUBLE", np.float64)
    tree.DTYPE = getattr(tree, "DTYPE", np.float32)
    base = sklearn.linear_model.LogisticRegression
    if not getattr(base.__init__, "_drops_removed_keywords", False):
        original = base.__init__

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            kwargs.pop("multi_class", None)
            kwargs.pop("penalty", None)
            original(self, *args, **kwargs)

        __init__._drops_removed_keywords = True
        base.__init__ = __init__

    import diffprivlib as dpl
    import diffprivlib.accountant
    import diffprivlib.models  # noqa: F401 - loaded here, after the shim

    return dpl


def _label_array(public: list, y) -> np.ndarray:
    """The public class values in the dtype of the labels, sorted as diffprivlib needs them."""
    kind = np.asarray(y).dtype.kind
    if kind in "iuf":
        return np.unique(np.asarray([float(v) for v in public]).astype(np.asarray(y).dtype))
    if kind == "b":
        return np.unique([str(v).lower() in ("true", "1") for v in public])
    return np.unique(np.asarray([str(v) for v in public], dtype=object))


def dp_estimator(*, task: str, model: str, dp: DPRequest, n_features: int, y, random_state):
    """The diffprivlib estimator for (task, model); its bounds are public (see the module)."""
    dpl = diffprivlib()
    models, accountant = dpl.models, dpl.accountant.BudgetAccountant(epsilon=dp.epsilon)
    key = (task, model)
    if key == (catalog.CLASSIFICATION, catalog.LOGISTIC_REGRESSION):
        return models.LogisticRegression(
            epsilon=dp.epsilon, data_norm=FEATURE_CLIP * math.sqrt(n_features), max_iter=2000,
            random_state=random_state, accountant=accountant,
        )  # fmt: skip
    if key == (catalog.CLASSIFICATION, catalog.RANDOM_FOREST):
        if not dp.classes:
            raise ValueError("the target's classes are not published by the listings")
        return models.RandomForestClassifier(
            n_estimators=DP_FOREST_TREES, max_depth=DP_FOREST_DEPTH, epsilon=dp.epsilon,
            bounds=(-FEATURE_CLIP, FEATURE_CLIP), classes=_label_array(dp.classes, y),
            random_state=random_state, accountant=accountant,
        )  # fmt: skip
    raise ValueError(f"{model} has no differentially private version for {task}")


def _forget_noise_seed(estimator) -> None:
    """The fitted model keeps nothing of the noise's randomness (it is saved for the buyer)."""
    estimator.random_state = None
    for part in getattr(estimator, "estimators_", []):
        part.random_state = None


def noise_random_state(noise_seed: bytes) -> np.random.RandomState:
    """The generator of a DP fit's noise: a function of its secret seed only."""
    sequence = np.random.SeedSequence(int.from_bytes(noise_seed, "big"))
    return np.random.RandomState(sequence.generate_state(8))


def fit_private(pipeline, x_train, y_train, *, task: str, model: str, dp: DPRequest) -> dict:
    """Fit `pipeline` with the DP version of its model in place of the plain one; returns what
    the report says about the mechanism. The noise is drawn from the request's secret seed, so
    whoever is handed that seed (a validator re-running the run) draws the same noise; the
    fitted model keeps nothing of it."""
    preprocess = pipeline.named_steps["preprocess"]
    features = preprocess.fit_transform(x_train, y_train)
    random_state = noise_random_state(dp.noise_seed)
    estimator = dp_estimator(
        task=task, model=model, dp=dp, n_features=features.shape[1], y=y_train,
        random_state=random_state,
    )  # fmt: skip
    estimator.fit(features, np.asarray(y_train))
    _forget_noise_seed(estimator)
    pipeline.steps[-1] = ("model", estimator)
    described = {
        "epsilon": dp.epsilon,
        "delta": 0.0,
        "mechanism": DP_VERSIONS[(task, model)],
        "library": f"diffprivlib {version('diffprivlib')}",
        "feature_bounds": [-FEATURE_CLIP, FEATURE_CLIP],
        "bounds_source": "standardised features clipped to public constants",
    }
    if model == catalog.LOGISTIC_REGRESSION:
        described["data_norm"] = round(FEATURE_CLIP * math.sqrt(features.shape[1]), 6)
    if model == catalog.RANDOM_FOREST:
        described["classes_source"] = "the listings' published class values"
        described["trees"], described["max_depth"] = DP_FOREST_TREES, DP_FOREST_DEPTH
    described["covers"] = (
        "the estimator's fit; imputation, scaling and one-hot categories are not private"
    )
    return described


# --- the leakage audit ---------------------------------------------------------------------------


def _row_losses(pipeline, x, y, task: str) -> np.ndarray:
    y = np.asarray(y)
    if task == catalog.CLASSIFICATION:
        proba = pipeline.predict_proba(x)
        column = {label: i for i, label in enumerate(pipeline.classes_)}
        picked = np.array(
            [proba[i, column[label]] if label in column else 0.0 for i, label in enumerate(y)]
        )
        return -np.log(np.clip(picked, 1e-12, 1.0))
    return (y.astype(float) - pipeline.predict(x)) ** 2


def membership_inference_auc(
    pipeline, x_train, y_train, x_test, y_test, *, task: str, seed: int
) -> float:
    """A loss-threshold membership-inference attack (Yeom et al. 2018): how well a row's loss
    under the fitted model tells training rows from held-out ones, as ROC AUC (0.5: not at all)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    members = rng.permutation(len(x_train))[:AUDIT_ROWS]
    others = rng.permutation(len(x_test))[:AUDIT_ROWS]
    losses = np.concatenate(
        [
            _row_losses(pipeline, x_train.iloc[members], np.asarray(y_train)[members], task),
            _row_losses(pipeline, x_test.iloc[others], np.asarray(y_test)[others], task),
        ]
    )
    is_member = np.r_[np.ones(len(members)), np.zeros(len(others))]
    return round(float(roc_auc_score(is_member, -losses)), 4)
