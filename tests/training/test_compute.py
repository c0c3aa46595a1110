"""training/compute.py: a run's computation as a pure function of its spec and the datasets' rows.
Its report is the same bytes in any process (other thread counts, other hash seeds, no Django), the
model is named by a canonical fingerprint, and a run through the real worker is re-computed byte
for byte from the chain, IPFS and the data keys alone, as a validator node will."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes, make_classification
from sklearn.linear_model import LogisticRegression

from training import artifacts
from training.compute import ListingFacts, RunFailed, RunSpec, compute
from training.lineage import model_fingerprint_matches

ROOT = Path(__file__).resolve().parents[2]
OWNERS = [
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
]
ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DP_SEED = bytes(range(32))


def cancer_frame() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, list(range(12)) + [-1]]
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    rng = np.random.default_rng(4)
    frame["site"] = rng.choice(["north", "south", "east", "west"], len(frame))
    frame["patient_id"] = rng.permutation(len(frame)) + 1000  # identifies rows: left out
    frame["email"] = [f"person{i}@example.org" for i in range(len(frame))]  # flagged: left out
    return frame


def large_frame() -> pd.DataFrame:
    """Rows enough for OpenBLAS to split its products over threads (it does not for a few
    hundred rows), so a thread count that was not pinned would change the fitted bits."""
    x, y = make_classification(
        n_samples=32_000, n_features=30, n_informative=10, flip_y=0.05, random_state=3
    )
    frame = pd.DataFrame(x.round(6), columns=[f"x{i}" for i in range(x.shape[1])])
    frame["site"] = np.random.default_rng(5).choice(["north", "south", "east"], len(frame))
    frame["target"] = y
    return frame


def column_facts(frame: pd.DataFrame, target: str) -> list[dict]:
    """The public statistics a listing's metadata holds (the target's exact classes)."""
    columns = []
    for name in frame.columns:
        column = {"name": name, "type": "float" if frame[name].dtype.kind == "f" else "text"}
        if name == target and frame[name].nunique() <= 10:
            counts = frame[name].value_counts().sort_index()
            column.update(
                type="integer", distinct=len(counts), top_values_exact=True,
                top_values=[{"value": int(v), "count": int(c)} for v, c in counts.items()],
            )  # fmt: skip
        columns.append(column)
    return columns


def spec_for(frames: list[pd.DataFrame], **options) -> RunSpec:
    listings = tuple(
        ListingFacts(
            listing_id=i + 1,
            owner=OWNERS[i % 2],
            price_wei=(i + 2) * 10**16,
            cid=f"bafkreifake{i}",
            content_sha256=f"{i:064x}",
            metadata={
                "type": "data-marketplace/dataset-metadata/v1",
                "title": f"Shard {i + 1}",
                "columns": column_facts(frame, options.get("target", "target")),
                "quality_warnings": [{"code": "personal_data", "column": "email"}],
                "feature_opt_in": [],
                "content": {"sha256": f"{i:064x}", "reading": {"kind": "csv"}},
                "created": "2026-12-03T07:00:00+00:00",
            },
        )  # fmt: skip
        for i, frame in enumerate(frames)
    )
    terms = {
        "task": "classification", "target": "target", "model": "logistic_regression",
        "test_fraction": 0.25, "seed": 7, "dp_epsilon": None, "curate": False,
        "min_group_rows": 20, "min_leaf_rows": 10, "code_version": "0" * 40, **options,
    }  # fmt: skip
    return RunSpec(
        job_id="0x" + "ab" * 32, chain_id=31337, escrow=ESCROW, value_wei=9 * 10**16,
        fee_wei=10**16, listings=listings, **terms,
    )  # fmt: skip


def shards(frame: pd.DataFrame) -> list[pd.DataFrame]:
    order = np.random.default_rng(0).permutation(len(frame))
    return [frame.iloc[part].reset_index(drop=True) for part in np.array_split(order, 2)]


CASES = {
    "logistic regression": (large_frame, {}),
    "gradient boosting, curated": (
        cancer_frame, {"model": "hist_gradient_boosting", "curate": True}
    ),
    "ridge regression": (
        lambda: load_diabetes(as_frame=True).frame, {"task": "regression", "model": "ridge"}
    ),
    "differentially private": (cancer_frame, {"dp_epsilon": 1.0}),
}  # fmt: skip

# Runs `compute` in a fresh interpreter without Django: what it needs is its arguments.
COMPUTE_SCRIPT = """
import json, sys
import pandas as pd
from threadpoolctl import threadpool_info
from training.compute import RunSpec, compute
spec_path, seed, out, *tables = sys.argv[1:]
spec = RunSpec.from_dict(json.loads(open(spec_path).read()))
threads = max(pool["num_threads"] for pool in threadpool_info())
computed = compute(spec, [pd.read_parquet(t) for t in tables],
                   dp_seed=bytes.fromhex(seed) if seed != "-" else None)
open(out, "wb").write(computed.report_bytes)
print(json.dumps({"threads": threads, "hash": computed.report_hash}))
"""


def compute_elsewhere(spec: RunSpec, frames, dp_seed, tmp_path: Path, threads: int):
    """Start `compute` in a subprocess with `threads` BLAS/OpenMP threads and its own hash seed."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec.as_dict()))
    tables = []
    for i, frame in enumerate(frames):
        tables.append(str(tmp_path / f"table-{i}.parquet"))
        frame.to_parquet(tables[-1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO")}
    env.update(
        {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "MKL_NUM_THREADS")},
        PYTHONHASHSEED=str(threads),
    )  # fmt: skip
    out = tmp_path / f"report-{threads}.json"
    process = subprocess.Popen(
        [sys.executable, "-c", COMPUTE_SCRIPT, str(spec_path), dp_seed.hex() if dp_seed else "-",
         str(out), *tables],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return process, out


@pytest.mark.parametrize("case", list(CASES))
def test_the_report_is_the_same_bytes_whatever_the_thread_count_and_process(case, tmp_path):
    make, options = CASES[case]
    frames = shards(make())
    spec = spec_for(frames, **options)
    dp_seed = DP_SEED if spec.dp_epsilon is not None else None

    started = []
    for threads in (1, 2):
        (tmp_path / str(threads)).mkdir()
        started.append(compute_elsewhere(spec, frames, dp_seed, tmp_path / str(threads), threads))
    here = compute(spec, frames, dp_seed=dp_seed)
    results = []
    for process, out in started:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr.decode()[-3000:]
        results.append((json.loads(stdout), out.read_bytes()))

    (one, one_bytes), (two, two_bytes) = results
    assert (one["threads"], two["threads"]) == (1, 2)  # the processes did differ
    assert one_bytes == two_bytes == here.report_bytes
    assert one["hash"] == two["hash"] == here.report_hash
    report = json.loads(one_bytes)
    assert report["model_fingerprint"] == artifacts.model_fingerprint(here.model_bytes)
    if spec.dp_epsilon is not None:
        assert report["differential_privacy"]["epsilon"] == 1.0
        assert DP_SEED.hex() not in one_bytes.decode()


def test_a_dp_report_depends_on_the_secret_seed():
    frames = shards(cancer_frame())
    spec = spec_for(frames, dp_epsilon=1.0)

    first = compute(spec, frames, dp_seed=DP_SEED)
    again = compute(spec, frames, dp_seed=DP_SEED)
    other = compute(spec, frames, dp_seed=bytes(reversed(DP_SEED)))

    assert first.report_bytes == again.report_bytes
    assert first.report["model_fingerprint"] != other.report["model_fingerprint"]
    with pytest.raises(ValueError, match="secret dp_seed"):
        compute(spec, frames)


def keys_of(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def assert_deterministic_content(report_bytes: bytes) -> None:
    """No time, host name, database key, ciphertext address or file hash of the model."""
    text = report_bytes.decode()
    report = json.loads(text)
    assert socket.gethostname() not in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text), "a timestamp"
    removed = {"run", "dataset", "id", "pk", "created", "model_cid", "model_sha256",
               "model_plaintext_sha256", "model_card", "cid"}  # fmt: skip
    assert not keys_of(report) & removed
    assert set(report["datasets"][0]) == {
        "listing_id", "title", "owner", "content_sha256", "price_wei", "contribution",
        "amount_wei", "excluded_rows", "uncredited_rows",
    }  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{64}", report["model_fingerprint"])


def test_the_report_holds_only_what_follows_from_the_spec_and_the_rows():
    frames = shards(cancer_frame())
    spec = spec_for(frames, curate=True)

    computed = compute(spec, frames)

    assert_deterministic_content(computed.report_bytes)
    report = computed.report
    assert computed.report_bytes == artifacts.canonical_json(report)
    assert computed.report_hash == artifacts.report_hash(report)
    assert (report["job_id"], report["chain_id"], report["escrow"]) == (
        spec.job_id, 31337, ESCROW,
    )  # fmt: skip
    assert [d["title"] for d in report["datasets"]] == ["Shard 1", "Shard 2"]  # the metadata's
    assert set(report["excluded_rows"]) == {"1", "2"}  # by listing id
    excluded = {x["column"] for x in report["privacy"]["excluded_columns"]}
    assert excluded == {"email", "patient_id"}
    # The amounts follow from the reported contributions and prices alone.
    amounts = [int(d["amount_wei"]) for d in report["datasets"]]
    assert sum(amounts) == spec.value_wei - spec.fee_wei
    assert amounts == [p.amount_wei for p in computed.payouts]
    assert model_fingerprint_matches(computed.model_bytes, report)


def test_too_few_rows_fail_the_run_with_a_reason():
    frames = [cancer_frame().iloc[:20]]
    with pytest.raises(RunFailed, match="at least 30 are needed"):
        compute(spec_for(frames), frames)


def test_the_spec_goes_through_json_and_back():
    spec = spec_for(shards(cancer_frame()), dp_epsilon=0.5)

    document = json.loads(json.dumps(spec.as_dict()))

    assert document["value_wei"] == str(9 * 10**16)
    assert document["listings"][0]["price_wei"] == str(2 * 10**16)
    assert RunSpec.from_dict(document) == spec
    with pytest.raises(ValueError, match="job id"):
        RunSpec.from_dict({**document, "job_id": "0x1234"})


def test_one_model_saved_twice_has_one_fingerprint_and_another_model_another():
    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(x, y)
    first = artifacts.model_to_bytes(model)
    time.sleep(2.1)  # zip entries keep the time in steps of two seconds
    second = artifacts.model_to_bytes(model)
    loaded = sio.loads(first, trusted=sio.get_untrusted_types(data=first))
    other = artifacts.model_to_bytes(LogisticRegression(C=0.1, max_iter=5000).fit(x, y))

    assert first != second  # the file's bytes say when (and where in memory) it was saved
    fingerprint = artifacts.model_fingerprint(first)
    assert artifacts.model_fingerprint(second) == fingerprint
    assert artifacts.model_fingerprint(artifacts.model_to_bytes(loaded)) == fingerprint
    assert artifacts.model_fingerprint(other) != fingerprint
    assert model_fingerprint_matches(second, {"model_fingerprint": fingerprint})
    assert not model_fingerprint_matches(other, {"model_fingerprint": fingerprint})
    assert not model_fingerprint_matches(b"not a zip", {"model_fingerprint": fingerprint})
