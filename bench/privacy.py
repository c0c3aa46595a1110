"""What differential privacy costs and buys, through the worker's own functions
(training.ml.fit_and_score with training.privacy's DP estimators and audit).

    .venv/bin/python bench/privacy.py [--repeats 3] [--seed 0]

On scikit-learn's breast-cancer, wine and diabetes sets and on a synthetic set with
personal-data-like columns (age, postcode, income, sex, a diagnosis), for each model that has a DP
version, without DP and at ε 0.5, 1 and 5, prints the mean over repeats of the test accuracy (or
R²), the membership-inference AUC (loss threshold, train vs held-out rows; 0.5 = no leak) and the
fit time, and the time of DP relative to the plain fit. Classes and the target's range are given
as the listings would publish them (the label set, the column's min and max); 25 % is held out.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine  # noqa: E402

from training import privacy  # noqa: E402
from training.catalog import CLASSIFICATION, REGRESSION  # noqa: E402
from training.ml import fit_and_score  # noqa: E402

EPSILONS = (None, 0.5, 1.0, 5.0)


def personal_data(rows: int = 4000, seed: int = 0) -> pd.DataFrame:
    """People-like rows: a diagnosis that depends on age, income and a few lab values."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows)
    income = np.round(rng.lognormal(10.3, 0.5, rows), -2)
    labs = rng.normal(size=(rows, 4))
    score = 0.04 * (age - 50) - 0.3 * np.log(income / 30000) + labs[:, 0] - 0.5 * labs[:, 1]
    frame = pd.DataFrame(
        {
            "age": age,
            "postcode": rng.choice([f"{n:05d}" for n in rng.integers(10000, 99999, 40)], rows),
            "income": income,
            "sex": rng.choice(["f", "m"], rows),
            **{f"lab_{i}": labs[:, i] for i in range(4)},
        }
    )
    frame["target"] = (score + rng.normal(scale=0.8, size=rows) > 0).astype(int)
    return frame


def demo_sets(seed: int):
    for name, loader, task in (
        ("breast cancer", load_breast_cancer, CLASSIFICATION),
        ("wine", load_wine, CLASSIFICATION),
        ("diabetes", load_diabetes, REGRESSION),
    ):
        yield name, loader(as_frame=True).frame, task
    yield "synthetic people", personal_data(seed=seed), CLASSIFICATION


# The worker's defaults (settings.PRIVACY_MIN_GROUP_ROWS, PRIVACY_MIN_LEAF_ROWS).
MIN_GROUP_ROWS, MIN_LEAF_ROWS = 20, 10


def dp_request(frame: pd.DataFrame, task: str, epsilon: float) -> privacy.DPRequest:
    """What the listings publish: the label set; the noise from a fresh secret seed."""
    return privacy.DPRequest(
        epsilon=epsilon,
        noise_seed=secrets.token_bytes(32),
        classes=sorted(frame["target"].unique()),
    )


def measure(frame, task, model, epsilon, repeats: int, seed: int) -> dict:
    scores, aucs, times = [], [], []
    for r in range(repeats):
        dp = None if epsilon is None else dp_request(frame, task, epsilon)
        started = time.perf_counter()
        result = fit_and_score(
            frame, target="target", task=task, model=model, test_fraction=0.25, seed=seed + r,
            dp=dp, min_group_rows=MIN_GROUP_ROWS, min_leaf_rows=MIN_LEAF_ROWS,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
        scores.append(result.metrics["accuracy" if task == CLASSIFICATION else "r2"])
        aucs.append(result.privacy["membership_inference_auc"])
    return {
        "score": float(np.mean(scores)),
        "score_sd": float(np.std(scores)),
        "auc": float(np.mean(aucs)),
        "seconds": float(np.mean(times)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    header = (
        f"{'dataset':<17} {'model':<20} {'ε':>5} {'metric':>8} {'score':>7} {'±sd':>6} "
        f"{'MI AUC':>7} {'fit s':>7} {'×plain':>7}"
    )
    print(f"{args.repeats} repeats per row, 25 % held out; MI AUC 0.5 = nothing learnt")
    print(header)
    print("-" * len(header))
    for name, frame, task in demo_sets(args.seed):
        frame = frame.copy()
        frame.columns = [c.replace(" ", "_") for c in frame.columns]
        with_dp = [m for (t, m) in privacy.DP_VERSIONS if t == task]
        # A task without a DP version (regression): its plain models' accuracy and audit only.
        plain_only = [] if with_dp else ["ridge", "random_forest"]
        for model in with_dp + plain_only:
            plain_seconds = None
            for epsilon in EPSILONS if model in with_dp else [None]:
                row = measure(frame, task, model, epsilon, args.repeats, args.seed)
                plain_seconds = plain_seconds or row["seconds"]
                print(
                    f"{name:<17} {model:<20} {'none' if epsilon is None else f'{epsilon:g}':>5} "
                    f"{'accuracy' if task == CLASSIFICATION else 'R²':>8} {row['score']:>7.3f} "
                    f"{row['score_sd']:>6.3f} {row['auc']:>7.3f} {row['seconds']:>7.2f} "
                    f"{row['seconds'] / plain_seconds:>7.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
