"""Data valuation: how much each training row, and so each dataset, helped the model the buyer
gets.

Method (chosen by bench/valuation.py, whose figures are in the docstring's last section):

- **Row value: out-of-sample fit of the run's own model.** A row is valued by how well models of
  the run's own kind, trained on the *other* rows, predict it:
  - random forest: Data-OOB (Kwon & Zou, "Data-OOB: Out-of-bag Estimate as a Simple and Efficient
    Data Value", ICML 2023) on the run's fitted forest itself: each tree is fitted on a bootstrap
    sample, and a row's value is the mean, over the trees that did not sample it, of the tree's
    score on it. No extra fit: the valuation is the model's own out-of-bag estimate.
  - other models (gradient boosting, linear models): the same estimate by cross-fitting: the
    training rows in `CROSS_FIT_FOLDS` folds (the run's seed), a copy of the run's estimator (same
    hyper-parameters) fitted on the other folds (at most `CROSS_FIT_MAX_ROWS` of them, sampled
    with the run's seed) scores each fold.
  The score is the probability the models give the row's own label minus the largest they give
  another label (classification: above 0 when its own label is predicted, -1 when another is
  predicted with certainty; Data-OOB's 0/1 accuracy made smooth), or minus the squared error in
  units of the target's variance (regression).
- **Margin over an uninformed guess.** Each row's baseline is the score of a guess that knows
  nothing of its features: the class shares of the training rows, or the training mean. A row's
  margin (value minus baseline) is positive when the rest of the data agrees with its label,
  negative when it contradicts it (a flipped label, a corrupted row).
- **Dataset contribution** = the sum of its credited rows' margins over the number of training
  rows: the part of the model's out-of-sample gain over guessing that its rows carry. Each
  distinct row is credited once, to the earliest listing of the run holding it (copies, and a
  dataset's repeats of its own rows, earn nothing); a row curation leaves out contributes
  nothing.
- **Harmful rows** (what `curate` leaves out of the final fit): rows in the low group of a 1-D
  2-means split of the values (the OpenDataVal protocol's split) whose margin is also negative.

Everything is deterministic for the run's seed (folds, forests), so anyone holding the data can
re-compute it exactly.

What bench/valuation.py measured (5 seeds x 5 datasets; 20 trials per dataset-level scenario):

- Row level, OpenDataVal's noisy-label protocol (10 % of labels flipped, 2-means split of the
  values; mean F1 / ROC AUC of finding the flipped rows): pydvl KNN-Shapley 0.685 / 0.932, pydvl
  Data-OOB 0.517 / 0.946, the previous KNN surrogate 0.687 / 0.933; this method 0.579 / 0.948 with
  a random forest, 0.615 / 0.934 with gradient boosting, 0.553 / 0.915 with logistic regression.
  It ranks flipped rows as well as or better than the others (AUC) but its values split less
  cleanly into two groups on the smooth scikit-learn sets, where KNN-Shapley's F1 is higher.
- Dataset level, 5 shards of one source with one corrupted: the corrupted shard gets the lowest
  contribution in 90-100 % of trials (labels flipped at 10-30 %, features replaced by noise, rows
  copied from another shard); its share of the positive contributions is 0 % for a copy (the
  previous surrogate: 20 %, a full share) and 0.2-1.2 % for noise features (previous: 10-14 %).
  Against leave-one-dataset-out with the run's own model, every method's Spearman is low (-0.2 to
  0.6): with four equal clean shards LODO's own ranking is mostly noise (the same LODO with
  another forest seed agrees with itself at 0.4-0.66). Against the shards' true quality (label
  noise 0/5/10/20/30 %), Spearman is 0.92-0.98.
- Cost: on a 200,000-row random-forest run (bench/training.py), 6.4 s of 122 s (5 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METHOD = "data-oob"
CROSS_FIT_FOLDS = 5
# Each fold's model learns from at most this many rows of the other folds (a sample drawn with the
# run's seed): the valuation's cost stays bounded on large runs while every row is still valued.
CROSS_FIT_MAX_ROWS = 20_000
DESCRIPTION = (
    "Each row is valued by how well models of the run's own kind, trained without it, predict "
    "it (Data-OOB on the run's forest; cross-fitted otherwise), minus an uninformed guess; a "
    "dataset's contribution is the sum over its credited rows divided by the training rows."
)
# How clearly models trained without a row must predict another label for curation to leave it
# out (bench/valuation.py: precision of the rows left out against flipped labels rises from 0.52
# to 0.70 on the synthetic set at 0.2, with recall 0.94 -> 0.86).
CURATION_MARGIN = 0.2
CURATION_RULE = (
    "with curate, rows in the low group of a 1-D 2-means split of the row values that models "
    "trained without them contradict (another label predicted by a margin above 0.2 and their own "
    "less likely than the class's share; for regression, an error above the uninformed guess's) "
    "are left out of the final fit (never a class's rows "
    "below the privacy minimum); they earn nothing"
)
# What bench/valuation.py measured for this method (the module docstring has the whole story).
BENCHMARK = {
    "script": "bench/valuation.py",
    "row_level_noisy_label_f1": {
        "this_method_random_forest": 0.579, "this_method_gradient_boosting": 0.615,
        "this_method_logistic_regression": 0.553, "pydvl_knn_shapley": 0.685,
        "pydvl_data_oob": 0.517,
    },
    "row_level_noisy_label_auc": {
        "this_method_random_forest": 0.948, "pydvl_knn_shapley": 0.932, "pydvl_data_oob": 0.946,
    },
    "corrupted_shard_ranked_last": "90-100 % of trials",
    "copied_shard_share_of_contributions": 0.0,
    "spearman_with_true_shard_quality": "0.92-0.98",
}  # fmt: skip

# The previous surrogate, kept for comparison in bench/valuation.py.
K_NEIGHBOURS = 10
MAX_TRAIN_ROWS = 4000
MAX_TEST_ROWS = 500


@dataclass(frozen=True)
class RowValues:
    values: np.ndarray  # per training row; higher helps more
    baseline: np.ndarray  # per training row: the same score for an uninformed guess
    method: str
    params: dict = field(default_factory=dict)
    # Classification: the probability of the row's own label, and its class's share of the rows.
    own: np.ndarray | None = None
    own_share: np.ndarray | None = None

    @property
    def margin(self) -> np.ndarray:
        return self.values - self.baseline


@dataclass(frozen=True)
class Valuation:
    method: str
    params: dict
    rows_valued: int
    contributions: dict[int, float]  # dataset id -> contribution
    excluded_rows: dict[int, int]  # dataset id -> training rows curation left out
    uncredited_rows: dict[int, int]  # dataset id -> rows credited once elsewhere (repeats)
    seconds: float = 0.0  # how long the row values took (a measurement: not in the report)


# --- row values ----------------------------------------------------------------------------------


def _label_positions(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    index = {label: i for i, label in enumerate(classes.tolist())}
    return np.array([index.get(label, -1) for label in y.tolist()])


def _own(proba: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """p(own label); 0 for a label the model never saw."""
    known = positions >= 0
    return np.where(known, proba[np.arange(len(proba)), np.maximum(positions, 0)], 0.0)


def _label_margin(proba: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """p(own label) - the largest p(other label): above 0 when the row's own label is the one
    predicted, down to -1 when another label is predicted with certainty."""
    rows = np.arange(len(proba))
    known = positions >= 0
    others = proba.copy()
    others[rows[known], positions[known]] = -np.inf
    return _own(proba, positions) - others.max(axis=1)


def _baseline(y: np.ndarray, task: str) -> tuple[np.ndarray, float]:
    """Each row's score under an uninformed guess (the class shares of the training rows, or
    the training mean), and the regression scale (the target's variance)."""
    if task == "classification":
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        shares = np.tile(counts / len(y), (len(y), 1))
        return _label_margin(shares, inverse), 1.0
    target = y.astype(float)
    scale = float(np.var(target)) or 1.0
    return -((target - target.mean()) ** 2) / scale, scale


def _is_plain_forest(fitted) -> bool:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    return (
        type(fitted) in (RandomForestClassifier, RandomForestRegressor)
        and fitted.bootstrap
        and hasattr(fitted, "estimators_")
    )


def _out_of_bag(forest, x: np.ndarray, y: np.ndarray, task: str, scale: float):
    """Data-OOB: each row's score from the trees that did not draw it (their mean predicted
    probabilities, or mean prediction), and how many such trees there were."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    counts = np.zeros(n)
    classification = task == "classification"
    totals = np.zeros((n, len(forest.classes_))) if classification else np.zeros(n)
    for tree, drawn in zip(forest.estimators_, forest.estimators_samples_, strict=True):
        unseen = np.ones(n, dtype=bool)
        unseen[drawn] = False
        rows = np.flatnonzero(unseen)
        if not len(rows):
            continue
        if classification:
            totals[rows] += tree.predict_proba(x[rows], check_input=False)
        else:
            totals[rows] += tree.predict(x[rows], check_input=False)
        counts[rows] += 1
    seen = counts > 0
    scores, own = np.zeros(n), np.zeros(n)
    if classification:
        proba = totals[seen] / counts[seen, None]
        positions = _label_positions(forest.classes_, y[seen])
        scores[seen] = _label_margin(proba, positions)
        own[seen] = _own(proba, positions)
    else:
        scores[seen] = -((y[seen].astype(float) - totals[seen] / counts[seen]) ** 2) / scale
    return scores, own, seen


def _cross_fitted(estimator, x, y, task: str, scale: float, seed: int) -> np.ndarray:
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(x)
    values, own = np.zeros(n), np.zeros(n)
    folds = CROSS_FIT_FOLDS
    if task == "classification":
        smallest = np.unique(y, return_counts=True)[1].min()
        splitter = (
            StratifiedKFold(folds, shuffle=True, random_state=seed)
            if smallest >= folds
            else KFold(folds, shuffle=True, random_state=seed)
        )
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    rng = np.random.default_rng(seed)
    for train, held in splitter.split(x, y if task == "classification" else None):
        if len(train) > CROSS_FIT_MAX_ROWS:
            train = np.sort(rng.choice(train, size=CROSS_FIT_MAX_ROWS, replace=False))
        model = clone(estimator).fit(x[train], y[train])
        if task == "classification":
            # A label absent from the other folds has probability 0.
            proba = model.predict_proba(x[held])
            positions = _label_positions(model.classes_, y[held])
            values[held], own[held] = _label_margin(proba, positions), _own(proba, positions)
        else:
            values[held] = -((y[held].astype(float) - model.predict(x[held])) ** 2) / scale
    return values, own


def row_values(
    *, model: str, task: str, x: np.ndarray, y: np.ndarray, seed: int, fitted,
    min_leaf_rows: int = 1,
) -> RowValues:  # fmt: skip
    """Every training row's value. `x` is the training rows as the fitted estimator saw them (the
    output of the run's preprocessing); `fitted` is the run's fitted estimator."""
    from sklearn.base import clone

    from training import catalog, ml

    y = np.asarray(y)
    baseline, scale = _baseline(y, task)
    classification = task == "classification"
    share = _class_share(y) if classification else None
    forest = fitted if _is_plain_forest(fitted) else None
    if forest is None and model == catalog.RANDOM_FOREST:
        # A forest fitted some other way (with differential privacy): an ordinary one of the same
        # kind, fitted here, is the one whose out-of-bag estimate values the rows.
        forest = ml.estimator(task, model, seed, min_leaf_rows).fit(np.asarray(x), y)
    if forest is not None:
        scores, own, seen = _out_of_bag(forest, np.asarray(x), y, task, scale)
        # A row every tree drew (rare) has no out-of-bag score: valued as the uninformed guess.
        values = np.where(seen, scores, baseline)
        own = np.where(seen, own, share) if classification else None
        params = {"trees": len(forest.estimators_), "score": _score_name(task)}
        return RowValues(values, baseline, "data-oob", params, own, share)
    base = ml.estimator(task, model, seed, min_leaf_rows) if _is_private(fitted) else fitted
    values, own = _cross_fitted(clone(base), np.asarray(x), y, task, scale, seed)
    params = {
        "folds": CROSS_FIT_FOLDS, "max_rows_per_fold": CROSS_FIT_MAX_ROWS,
        "score": _score_name(task),
    }  # fmt: skip
    return RowValues(
        values, baseline, "cross-fitted out-of-fold", params,
        own if classification else None, share,
    )  # fmt: skip


def _class_share(y: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return counts[inverse] / len(y)


def _is_private(fitted) -> bool:
    return type(fitted).__module__.startswith("diffprivlib")


def _score_name(task: str) -> str:
    if task == "classification":
        return "probability of the row's own label minus the largest probability of another"
    return "minus the squared error over the target's variance"


# --- groups, curation, contributions ------------------------------------------------------------


def low_group(values: np.ndarray) -> np.ndarray:
    """The low group of the exact 1-D 2-means split of the values (the split minimising the
    within-group sum of squares): a boolean mask."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return np.zeros(n, dtype=bool)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    prefix, prefix_sq = np.cumsum(ordered), np.cumsum(ordered**2)
    total, total_sq = prefix[-1], prefix_sq[-1]
    left = np.arange(1, n)  # the low group's size
    low_ss = prefix_sq[:-1] - prefix[:-1] ** 2 / left
    high_ss = (total_sq - prefix_sq[:-1]) - (total - prefix[:-1]) ** 2 / (n - left)
    split = int(np.argmin(low_ss + high_ss)) + 1
    if ordered[split - 1] == ordered[split]:  # equal values stay together
        return np.zeros(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    mask[order[:split]] = True
    return mask


def harmful(values: RowValues) -> np.ndarray:
    """Rows curation leaves out: in the low 2-means group, and contradicted by the rest of the
    data (models trained without the row predict another label, or predict its target worse
    than the uninformed guess)."""
    contradicted = values.margin < 0
    if values.own is not None:
        # Another label predicted by a clear margin, and its own less likely than a guess's.
        contradicted = (values.values < -CURATION_MARGIN) & (values.own < values.own_share)
    return low_group(values.values) & contradicted


def dataset_contributions(
    values: RowValues,
    *,
    owners: np.ndarray,
    credited: np.ndarray | None = None,
    excluded: np.ndarray | None = None,
) -> dict[int, float]:
    """Each dataset's contribution: the margins of its credited, kept rows over the rows valued."""
    margin = values.margin.copy()
    if credited is not None:
        margin[~credited] = 0.0
    if excluded is not None:
        margin[excluded] = 0.0
    n = max(len(margin), 1)
    return {int(d): float(margin[owners == d].sum() / n) for d in np.unique(owners)}


def counts_by_dataset(owners: np.ndarray, mask: np.ndarray | None) -> dict[int, int]:
    found = {int(d): 0 for d in np.unique(owners)}
    if mask is not None:
        ids, counts = np.unique(owners[mask], return_counts=True)
        found.update({int(d): int(c) for d, c in zip(ids, counts, strict=True)})
    return found


def credited_to_earliest(keys: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Which rows are credited: each distinct row (key) once, to the earliest listing holding it
    (`owners`: listing ids, the earliest has the lowest). A row also in an earlier listing earns
    its dataset nothing, and neither does a dataset's repeat of one of its own rows (repeating
    rows would otherwise multiply their credit)."""
    first: dict[int, tuple[int, int]] = {}  # key -> (owner, position) of the credited row
    for position, (key, owner) in enumerate(zip(keys.tolist(), owners.tolist(), strict=True)):
        if key not in first or owner < first[key][0]:
            first[key] = (owner, position)
    credited = np.zeros(len(keys), dtype=bool)
    credited[[position for _, position in first.values()]] = True
    return credited


# --- the previous surrogate (for comparison) ----------------------------------------------------


def _utilities(train_y: np.ndarray, test_y: np.ndarray, task: str, scale: float) -> np.ndarray:
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
    """Exact KNN-Shapley (Jia et al., VLDB 2019) of each training row, averaged over the test
    points: the marketplace's earlier valuation, kept as a baseline for bench/valuation.py."""
    n = len(train_x)
    scale = float(np.std(train_y.astype(float))) if task == "regression" else 1.0
    scale = scale or 1.0
    values = np.zeros(n)
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
        for i in range(n - 2, -1, -1):
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
) -> dict[int, float]:
    """The earlier per-dataset contributions: KNN-Shapley on a stratified subsample."""
    rng = np.random.default_rng(seed)
    dataset_ids = sorted(int(d) for d in np.unique(train_dataset))
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
    row_values_ = knn_shapley(
        train_x[train_rows], train_y[train_rows], test_x[test_rows], test_y[test_rows],
        task=task, k=K_NEIGHBOURS,
    )  # fmt: skip
    owners = train_dataset[train_rows]
    return {d: float(row_values_[owners == d].sum()) for d in dataset_ids}
