"""How well the listing's copy check (datasets/copycats.py) tells copies from other data, and
what it costs an upload, through the listing's own functions: each file is written to disk and
read by `profiling.check_file` and `profiling.describe_file` with a signature key, as the worker
reads an upload, then judged by `copycats.judge` against a listing as the index holds it
(`copycats.indexed`: the keys the database would return). Only the SQL lookup is replaced, by
an equivalent in-memory one (and timed apart on SQLite with the index's table and index).

    .venv/bin/python bench/copycats.py [--seeds 5] [--listings 1000]

1. Detection rate per transform of a listing (half of a source, shuffled by seed): shuffled rows,
   renamed and reordered columns, CSV to Parquet, a 60 % subset, values rounded to the fewest
   decimals within 0.1 %, values times 1 ± U(0.001) or exactly 1 ± 0.001, all of these at once
   (and, past the tolerance, 1 ± U(0.005)); on scikit-learn's breast-cancer, wine and digits
   sets and a synthetic one (integers, log-normal amounts, a category, a score), over --seeds
   seeds.
2. False-positive rate: each source split into 5 disjoint shards, each shard judged against each
   other shard listed (20 pairs per seed); and pairs of low-entropy files (2-4 columns of small
   integers, 300 rows) drawn independently, with the share of rows they have in common.
3. Per-upload cost at 10,000 and 200,000 rows (a synthetic 6-column file): the time the
   signatures add to the describe pass, the keyed hashes and judging, and the lookup of the
   upload's keys in a SQLite index holding --listings listings of 4,096 keys each.
4. In a run over an original, another dataset and a later copy of the original that was listed
   anyway: the copy's share of the positive contributions, with and without the run's crediting
   of rows to the earliest listing.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_wine  # noqa: E402

from datasets import copycats, profiling  # noqa: E402

THRESHOLD = 0.5  # DATASET_COPY_MATCH_FRACTION's default
MIN_ROWS = 20  # PRIVACY_MIN_GROUP_ROWS's default
LIMITS = profiling.Limits(
    max_columns=1000,
    max_line_bytes=1024 * 1024,
    max_decoded_bytes=4 * 1024**3,
    max_decode_ratio=200,
)
KEY = copycats.SignatureKey.derive(os.urandom(32))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--listings", type=int, default=1000, help="in the SQLite index")
    return parser.parse_args()


# --- sources and transforms ------------------------------------------------------------------


def synthetic(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "income": np.round(rng.lognormal(10, 0.6, rows), 2),
            "visits": rng.poisson(3, rows),
            "city": rng.choice(["Paris", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon"], rows),
            "score": np.round(rng.normal(0, 1, rows), 4),
            "weight": np.round(rng.uniform(40, 120, rows), 1),
        }
    )


def sources() -> dict[str, pd.DataFrame]:
    return {
        "breast cancer": load_breast_cancer(as_frame=True).frame,
        "wine": load_wine(as_frame=True).frame,
        "digits": load_digits(as_frame=True).frame,
        "synthetic": synthetic(2000, seed=99),
    }


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name in frame.select_dtypes("float").columns:
        values = frame[name].to_numpy()
        for decimals in range(12):
            candidate = np.round(values, decimals)
            change = np.abs(candidate - values) / np.maximum(np.abs(values), 1e-300)
            if (change[values != 0] <= 0.001).all():
                out[name] = candidate
                break
    return out


def noisy(frame: pd.DataFrame, rng: np.random.Generator, size=0.001, exact=False) -> pd.DataFrame:
    """Each number times 1 ± U(size), or with `exact` times 1 ± size (the worst case)."""
    out = frame.astype({name: float for name in frame.select_dtypes("number").columns})
    for name in out.select_dtypes("number").columns:
        if exact:
            change = rng.choice([-size, size], len(out))
        else:
            change = rng.uniform(-size, size, len(out))
        out[name] = out[name] * (1 + change)
    return out


def renamed(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.iloc[:, rng.permutation(len(frame.columns))]
    out.columns = [f"c{i}" for i in range(len(out.columns))]
    return out


def shuffled(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return frame.iloc[rng.permutation(len(frame))]


TRANSFORMS = {
    "shuffled rows": lambda f, rng: (shuffled(f, rng), ".csv"),
    "renamed+reordered": lambda f, rng: (renamed(f, rng), ".csv"),
    "CSV -> Parquet": lambda f, rng: (f, ".parquet"),
    "60 % subset": lambda f, rng: (f.iloc[rng.permutation(len(f))[: int(0.6 * len(f))]], ".csv"),
    "rounded <= 0.1 %": lambda f, rng: (rounded(f), ".csv"),
    "noise 1 ± 0.001": lambda f, rng: (noisy(f, rng), ".csv"),
    "noise exactly ±0.1 %": lambda f, rng: (noisy(f, rng, exact=True), ".csv"),
    "all at once": lambda f, rng: (
        noisy(renamed(shuffled(f, rng), rng).iloc[: int(0.6 * len(f))], rng),
        ".parquet",
    ),
    # Beyond the tolerance: not a copy by the check's definition (shown for where it stops).
    "noise 1 ± 0.005 (*)": lambda f, rng: (noisy(f, rng, size=0.005), ".csv"),
}


# --- reading as the listing does -------------------------------------------------------------


class Files:
    def __init__(self, directory: Path):
        self.directory = directory
        self.count = 0

    def write(self, frame: pd.DataFrame, suffix: str = ".csv") -> Path:
        self.count += 1
        path = self.directory / f"file-{self.count}{suffix}"
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path


def signatures(path: Path) -> copycats.SignatureSample:
    checked = profiling.check_file(path, limits=LIMITS)
    return profiling.describe_file(checked, limits=LIMITS, signature_key=KEY).row_signatures


def verdict(upload: copycats.SignatureSample, listing: copycats.IndexedListing):
    keys = KEY.hashes(upload.query_signatures)
    return copycats.judge(upload, keys, listing, threshold=THRESHOLD, min_rows=MIN_ROWS)


def detection(files: Files, seeds: int) -> None:
    names = list(sources())
    print("1. Detection rate: copies of a listing (half of the source) refused")
    print(f"   {'transform':20}" + "".join(f"{n:>15}" for n in names) + f"{'mean share':>12}")
    found = {t: {n: 0 for n in names} for t in TRANSFORMS}
    shares = {t: [] for t in TRANSFORMS}
    for name, source in sources().items():
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            original = source.iloc[rng.permutation(len(source))[: len(source) // 2]]
            listing = copycats.indexed(signatures(files.write(original)), KEY)
            for transform, make in TRANSFORMS.items():
                frame, suffix = make(original, rng)
                outcome = verdict(signatures(files.write(frame, suffix)), listing)
                found[transform][name] += outcome.copy
                shares[transform].append(outcome.share)
    for transform in TRANSFORMS:
        cells = "".join(f"{found[transform][n] / seeds:>15.0%}" for n in names)
        print(f"   {transform:20}{cells}{np.mean(shares[transform]):>12.3f}")
    print("   (*) beyond the 0.1 % tolerance: outside what the check promises to recognise")


def small_integers(seed: int, rows: int, highs: tuple[int, ...]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"c{i}": rng.integers(0, h, rows) for i, h in enumerate(highs)})


def false_positives(files: Files, seeds: int) -> None:
    print("\n2. False positives: disjoint shards of one source (5 shards, every ordered pair)")
    print(f"   {'source':20}{'pairs':>8}{'refused':>9}{'max share':>11}")
    for name, source in sources().items():
        pairs = refused = 0
        highest = 0.0
        for seed in range(seeds):
            order = np.random.default_rng(100 + seed).permutation(len(source))
            parts = [signatures(files.write(source.iloc[p])) for p in np.array_split(order, 5)]
            listings = [copycats.indexed(part, KEY) for part in parts]
            for i, listing in enumerate(listings):
                for j, upload in enumerate(parts):
                    if i != j:
                        outcome = verdict(upload, listing)
                        pairs, refused = pairs + 1, refused + outcome.copy
                        highest = max(highest, outcome.share)
        print(f"   {name:20}{pairs:>8}{refused:>9}{highest:>11.3f}")
    print("   low-entropy pairs (independent files of small integers, 300 rows each)")
    print(f"   {'columns':20}{'pairs':>8}{'refused':>9}{'max share':>11}{'shared rows':>13}")
    for highs in ((10, 10), (100, 10), (1000, 10), (12, 10, 6), (6, 6, 6, 6)):
        pairs = refused = 0
        highest = shared = 0.0
        for seed in range(seeds):
            first, second = (
                small_integers(2 * seed, 300, highs),
                small_integers(2 * seed + 1, 300, highs),
            )
            common = len(pd.merge(second, first.drop_duplicates(), how="inner")) / len(second)
            listing = copycats.indexed(signatures(files.write(first)), KEY)
            outcome = verdict(signatures(files.write(second)), listing)
            pairs, refused = pairs + 1, refused + outcome.copy
            highest, shared = max(highest, outcome.share), max(shared, common)
        label = " x ".join(f"0-{h - 1}" for h in highs)
        print(f"   {label:20}{pairs:>8}{refused:>9}{highest:>11.3f}{shared:>13.0%}")


# --- cost ----------------------------------------------------------------------------------------


def lookup_index(listings: int) -> sqlite3.Connection:
    """The index's table and index (datasets.RowSignature) in SQLite, `listings` x 4,096 keys."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE row_signature (id INTEGER PRIMARY KEY, dataset_id INT, key INT)")
    rng = np.random.default_rng(7)
    for dataset in range(listings):
        keys = rng.integers(-(2**63), 2**63 - 1, copycats.STORE_CAP, dtype=np.int64)
        db.executemany(
            "INSERT INTO row_signature (dataset_id, key) VALUES (?, ?)",
            ((dataset, int(k)) for k in keys),
        )
    db.execute("CREATE INDEX row_signature_key ON row_signature (key, dataset_id)")
    return db


def cost(files: Files, listings: int) -> None:
    print(
        f"\n3. Cost per upload (synthetic rows, 6 columns; SQLite index of {listings:,} listings)"
    )
    db = lookup_index(listings)
    header = ("rows", "describe", "+signatures", "keys+judge", "lookup", "check", "probes/row")
    print("   " + "".join(f"{h:>13}" for h in header) + f"{'keys looked up':>16}")
    for rows in (10_000, 200_000):
        path = files.write(synthetic(rows, seed=rows))
        checked = profiling.check_file(path, limits=LIMITS)
        plain, signed = [], []
        for _ in range(3):
            start = time.perf_counter()
            profiling.describe_file(checked, limits=LIMITS)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            sample = profiling.describe_file(checked, limits=LIMITS, signature_key=KEY)
            signed.append(time.perf_counter() - start)
        upload = sample.row_signatures
        listing = copycats.indexed(upload, KEY)
        start = time.perf_counter()
        keys = KEY.hashes(upload.query_signatures)
        copycats.judge(upload, keys, listing, threshold=THRESHOLD, min_rows=MIN_ROWS)
        judged = time.perf_counter() - start
        start = time.perf_counter()
        unique = np.unique(keys).tolist()
        marks = ",".join("?" * len(unique))
        db.execute(
            f"SELECT dataset_id, key FROM row_signature WHERE key IN ({marks})", unique
        ).fetchall()
        looked = time.perf_counter() - start
        extra = max(min(signed) - min(plain), 0.0)
        cells = (
            f"{rows:,}",
            f"{min(plain) * 1000:.0f} ms",
            f"{extra * 1000:.0f} ms",
            f"{judged * 1000:.0f} ms",
            f"{looked * 1000:.0f} ms",
            f"{(extra + judged + looked) * 1000:.0f} ms",
            f"{upload.probes_per_row:.2f}",
        )
        print("   " + "".join(f"{c:>13}" for c in cells) + f"{len(unique):>16,}")
    print(
        "   describe: the listing's reading and profile without signatures; +signatures: what\n"
        "   computing them adds to it; check: +signatures, keyed hashes, judging and the lookup"
    )


def slipped_copy_share(seeds: int) -> None:
    """In a run over an original, another dataset and a copy of the original that was listed
    anyway (later), the copy's share of the positive contributions, with the run's crediting of
    rows to the earliest listing (training.valuation.credited_to_earliest over row_keys)."""
    from training import ml
    from training.valuation import credited_to_earliest

    print("\n4. A copy that slipped through, in a run: its share of the positive contributions")
    print("   (breast cancer: original = half, other = the rest, copy = the original changed;")
    print("   random forest as a run fits it; half the payout is split by these shares)")
    print(f"   {'copy':28}{'credited rows':>15}{'share, credited':>17}{'share, not':>12}")
    source = load_breast_cancer(as_frame=True).frame

    def features(change):  # the labels are copied as they are
        return lambda f, rng: change(f.drop(columns="target"), rng).assign(target=f["target"])

    changes = {
        "exact, rows shuffled": lambda f, rng: shuffled(f, rng),
        "rounded within 0.1 %": features(lambda f, rng: rounded(f)),
        "values x 1 ± U(0.001)": features(lambda f, rng: noisy(f, rng, size=0.001)),
        "values x 1 ± U(0.005) (*)": features(lambda f, rng: noisy(f, rng, size=0.005)),
    }
    for name, change in changes.items():
        credited_rows, with_credit, without = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(source))
            original = source.iloc[order[: len(order) // 2]].reset_index(drop=True)
            other = source.iloc[order[len(order) // 2 :]].reset_index(drop=True)
            copy = change(original.copy(), rng)[original.columns]
            combined = pd.concat([original, other, copy], ignore_index=True)
            owners = np.repeat([1, 2, 3], [len(original), len(other), len(copy)])
            credited = credited_to_earliest(copycats.row_keys(combined), owners)
            credited_rows.append(credited[owners == 3].mean())
            for mask, shares in ((credited, with_credit), (None, without)):
                result = ml.fit_and_score(
                    combined, target="target", task="classification", model="random_forest",
                    test_fraction=0.25, seed=seed, min_group_rows=20, min_leaf_rows=10,
                    owners=owners, credited=mask,
                )  # fmt: skip
                positive = {k: max(v, 0.0) for k, v in result.valuation.contributions.items()}
                shares.append(positive[3] / sum(positive.values()))
        print(
            f"   {name:28}{np.mean(credited_rows):>14.0%} {np.mean(with_credit):>16.1%}"
            f"{np.mean(without):>12.1%}"
        )
    print("   (*) beyond the listing check's 0.1 % tolerance; shares: mean over seeds")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        files = Files(Path(scratch))
        detection(files, args.seeds)
        false_positives(files, args.seeds)
        cost(files, args.listings)
    slipped_copy_share(args.seeds)


if __name__ == "__main__":
    main()
