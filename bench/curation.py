"""What `curate` gives the buyer on the noisy demo, in-process (no stack needed).

    .venv/bin/python bench/curation.py [--seeds 5]

The demo's breast-cancer listing is three shards (`datasets/demo.py`); the third is noisy (about a
third of its labels flipped, noise added to its features). For each seed, a quarter of the two
clean shards' rows is held out as a clean test set, and the model is trained on:

- all three shards (what a buyer gets without curation),
- all three shards with `curate` (harmful rows left out of the final fit),
- the two clean shards alone (what a buyer who knew which shard was bad would choose),

each through `training.ml.fit_and_score` as a run calls it (privacy minimums 20 and 10; its own
internal split holds out 5 % of the training rows). Prints the mean accuracy on the clean test
set per model and variant, how many rows curation left out of each shard, and the accuracy a run
reports on its own test split (which, without curation, holds noisy rows too).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from datasets import demo  # noqa: E402
from training import ml  # noqa: E402

LIMITS = {"min_group_rows": 20, "min_leaf_rows": 10}
MODELS = ("hist_gradient_boosting", "random_forest", "logistic_regression")


def demo_shards() -> tuple[list[pd.DataFrame], str]:
    shards = [
        pd.read_csv(io.BytesIO(content))
        for slug, _, _, content, _ in ((d.slug, *rest) for d, *rest in demo.shards())
        if slug == "breast-cancer"
    ]
    return shards, "diagnosis"


def accuracy(frame, *, target, model, seed, test, **terms):
    """Accuracy on the clean test rows of the model a run would fit on `frame`."""
    result = ml.fit_and_score(
        frame, target=target, task="classification", model=model,
        test_fraction=0.05, seed=seed, **LIMITS, **terms,
    )  # fmt: skip
    predicted = result.pipeline.predict(test.drop(columns=target))
    return float((predicted == test[target].to_numpy()).mean()), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    shards, target = demo_shards()
    started = time.monotonic()
    print(f"demo breast-cancer shards: {[len(s) for s in shards]} rows; shard 3 is noisy")
    print(f"{'model':<24}{'all shards':>12}{'curate':>10}{'clean only':>12}"
          f"{'left out (1/2/3)':>22}{'run-reported acc.':>20}")  # fmt: skip
    for model in MODELS:
        scores = {"all": [], "curate": [], "clean": []}
        left_out, reported = [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            train_parts, test_parts = [], []
            for number, shard in enumerate(shards, start=1):
                if number == 3:
                    train_parts.append(shard.assign(_shard=number))
                    continue
                held = rng.random(len(shard)) < 0.25
                train_parts.append(shard[~held].assign(_shard=number))
                test_parts.append(shard[held])
            train = pd.concat(train_parts, ignore_index=True)
            test = pd.concat(test_parts, ignore_index=True)
            owners = train.pop("_shard").to_numpy()

            common = {"target": target, "model": model, "seed": seed, "test": test}
            scores["all"].append(accuracy(train, **common)[0])
            curated, result = accuracy(train, **common, owners=owners, curate=True)
            scores["curate"].append(curated)
            left_out.append([result.valuation.excluded_rows.get(n, 0) for n in (1, 2, 3)])
            scores["clean"].append(accuracy(train[owners != 3], **common)[0])
            whole = pd.concat(shards, ignore_index=True)
            reported.append(
                ml.fit_and_score(
                    whole, target=target, task="classification", model=model,
                    test_fraction=0.25, seed=seed, **LIMITS,
                ).metrics["accuracy"]
            )  # fmt: skip
        out = np.mean(left_out, axis=0)
        print(
            f"{model:<24}{np.mean(scores['all']):>12.3f}{np.mean(scores['curate']):>10.3f}"
            f"{np.mean(scores['clean']):>12.3f}"
            f"{f'{out[0]:.1f}/{out[1]:.1f}/{out[2]:.1f}':>22}{np.mean(reported):>20.3f}"
        )
    took = time.monotonic() - started
    print(f"({args.seeds} seeds; accuracy on clean held-out rows; {took:.0f} s)")


if __name__ == "__main__":
    main()
