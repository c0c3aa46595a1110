"""Training-run figures, against the stack that `make up` runs (its worker, chain, IPFS node and
database).

    .venv/bin/python bench/training.py [--rows 40000] [--datasets 5] [--model random_forest]

Lists N synthetic datasets of R rows (one with shuffled labels) through the real listing pipeline,
commissions a model on all of them, pays from anvil dev account 4, and prints:

- the time from the funding transaction being mined to the run being `completed` (fetch from
  IPFS, decrypt, train, value, package, pin, settle on-chain),
- the time of a bare in-process fit + score of the same pipeline on the same combined data,
- their ratio, and what each dataset was paid (the noisy one should earn least),
- what the valuation adds: the time of the run's valuation step (`valuation.seconds` of the same
  in-process fit with the run's valuation) as a share of the run's time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from eth_account import Account  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

from chain.client import get_web3  # noqa: E402
from chain.wrappers import DatasetRegistry  # noqa: E402
from datasets.models import Dataset  # noqa: E402
from datasets.selectors import listing_terms  # noqa: E402
from datasets.services import (  # noqa: E402
    dataset_create,
    dataset_process,
    dataset_register,
    dataset_signature_submit,
)
from marketplace.models import User  # noqa: E402
from training import ml  # noqa: E402
from training.models import TrainingRun  # noqa: E402
from training.services import training_run_create, training_run_escrow_request  # noqa: E402

# anvil's well-known dev accounts (dev chain only): owners 1-3, buyer 4.
OWNER_KEYS = [
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
]
BUYER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"


def user(address: str) -> User:
    found, _ = User.objects.get_or_create(address=address, defaults={"username": address})
    return found


def list_frame(frame: pd.DataFrame, key: str, title: str, folder: Path) -> Dataset:
    owner = user(Account.from_key(key).address)
    path = folder / f"{title}.csv"
    frame.to_csv(path, index=False)
    dataset = dataset_create(
        owner=owner, upload=path, original_filename=path.name, title=title,
        license="CC-BY-4.0", price_wei=10**16, enqueue=False,
    )  # fmt: skip
    dataset_process(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    if dataset.status != Dataset.Status.AWAITING_SIGNATURE:
        sys.exit(f"listing {title} stopped: {dataset.status} {dataset.status_message}")
    typed = DatasetRegistry.deployed().listing_typed_data(listing_terms(dataset))
    signature = Account.sign_typed_data(key, full_message=typed).signature
    dataset_signature_submit(
        dataset_id=dataset.pk, user=owner, signature="0x" + signature.hex(), enqueue=False
    )
    dataset_register(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--model", default="random_forest")
    args = parser.parse_args()

    seed = int(time.time()) % 100_000  # fresh rows each time: a repeat is no duplicate listing
    features, labels = make_classification(
        n_samples=args.rows * args.datasets, n_features=20, n_informative=8, random_state=seed
    )
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(20)]).round(5)
    frame["label"] = labels
    shards = [frame.iloc[part] for part in np.array_split(np.arange(len(frame)), args.datasets)]
    noisy = args.datasets - 1
    shards[noisy] = shards[noisy].assign(
        label=np.random.default_rng(seed).permutation(shards[noisy]["label"].to_numpy())
    )

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        datasets = [
            list_frame(
                shard.reset_index(drop=True), OWNER_KEYS[i % 3], f"bench-{seed}-{i}", Path(tmp)
            )
            for i, shard in enumerate(shards)
        ]
        took = time.monotonic() - started
        print(f"listed {len(datasets)} datasets of {args.rows} rows in {took:.1f} s")

    run = training_run_create(
        buyer=user(BUYER), dataset_ids=[d.pk for d in datasets], target_column="label",
        model=args.model, seed=1,
    )  # fmt: skip
    escrow = training_run_escrow_request(run)
    w3 = get_web3()
    payment = {"from": BUYER, "to": escrow["address"], "data": escrow["data"]}
    tx_hash = w3.eth.send_transaction({**payment, "value": int(escrow["value_wei"])})
    w3.eth.wait_for_transaction_receipt(tx_hash)
    mined = time.monotonic()
    # What the run page does right after the payment is mined: point the marketplace at it.
    from training.services import training_run_funding_hint

    training_run_funding_hint(run=run, tx_hash=tx_hash.to_0x_hex())
    while True:
        run.refresh_from_db()
        if run.status in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED):
            break
        time.sleep(0.05)
    pipeline_seconds = time.monotonic() - mined
    if run.status != TrainingRun.Status.COMPLETED:
        sys.exit(f"the run failed: {run.error}")

    combined = pd.concat(shards, ignore_index=True)
    bare_started = time.monotonic()
    ml.fit_and_score(
        combined, target="label", task=run.task, model=args.model,
        test_fraction=run.test_fraction, seed=run.seed, min_group_rows=20, min_leaf_rows=10,
    )  # fmt: skip
    bare_seconds = time.monotonic() - bare_started
    owners = np.concatenate(
        [np.full(len(s), d.listing_id) for s, d in zip(shards, datasets, strict=True)]
    )
    valuing = ml.fit_and_score(
        combined, target="label", task=run.task, model=args.model,
        test_fraction=run.test_fraction, seed=run.seed, min_group_rows=20, min_leaf_rows=10,
        owners=owners,
    ).valuation.seconds  # fmt: skip

    print(f"model: {args.model}, {args.datasets} datasets x {args.rows} rows")
    print(f"funding mined -> completed: {pipeline_seconds:.1f} s")
    print(f"bare fit + score in-process: {bare_seconds:.1f} s")
    print(f"ratio: {pipeline_seconds / bare_seconds:.2f} (target <= 1.5)")
    print(
        f"valuation ({run.report['valuation']['method']}, in-process): {valuing:.1f} s, "
        f"{valuing / pipeline_seconds:.0%} of the run's time (target <= 20 %)"
    )
    print(f"accuracy: {run.metrics['accuracy']:.4f}")
    for entry in run.inputs.order_by("position"):
        tag = "  <- labels shuffled" if entry.position == noisy else ""
        print(
            f"  dataset {entry.dataset_id}: contribution {entry.contribution:+.4f}, "
            f"paid {int(entry.amount_wei)} wei{tag}"
        )


if __name__ == "__main__":
    main()
