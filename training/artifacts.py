"""What a run leaves behind: the model saved with skops (safe to load, unlike pickle) and its
canonical fingerprint, its model card, and the valuation report whose hash goes on-chain."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import zipfile
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINT_METHOD = (
    "sha-256 of the canonical JSON (keys sorted) of the skops file's schema.json, with every "
    '"__id__" left out and every array file named by the sha-256 of its bytes '
    "(training/artifacts.py: model_fingerprint)"
)


def model_to_bytes(pipeline) -> bytes:
    import skops.io as sio  # scikit-learn: loaded by the trainers only

    return sio.dumps(pipeline, compression=8)


class NotAModelFile(ValueError):
    """The bytes are not a skops file."""


def model_fingerprint(model_bytes: bytes) -> str:
    """The model's fingerprint (64 hex digits): equal for every save of the same fitted model,
    different when anything the loaded model holds differs.

    A skops file's bytes differ on every save of one model: its zip entries carry the time of the
    save, and the names of its array files and the "__id__" fields of its object tree
    (schema.json) are the objects' memory addresses. The fingerprint leaves those out: it is the
    sha-256 of the tree as canonical JSON, each "__id__" dropped and each array file's name
    replaced by the sha-256 of the file's bytes (numpy's .npy format: header and data)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            tree = json.loads(archive.read("schema.json"))

            def file_digest(name: str) -> str:
                return "sha256:" + hashlib.sha256(archive.read(name)).hexdigest()

            canonical = _canonical_node(tree, file_digest)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise NotAModelFile(f"not a skops model file: {exc}") from exc
    return hashlib.sha256(canonical_json(canonical)).hexdigest()


def _canonical_node(value, file_digest):
    if isinstance(value, list):
        return [_canonical_node(v, file_digest) for v in value]
    if not isinstance(value, dict):
        return value
    node = "__loader__" in value  # a skops node, not a plain mapping it stores
    out = {}
    for key, item in value.items():
        if node and key == "__id__":
            continue
        if node and key == "file" and isinstance(item, str):
            out[key] = file_digest(item)
        else:
            out[key] = _canonical_node(item, file_digest)
    return out


@cache
def code_version() -> str:
    """The commit of the code that trained the model (or "unknown" outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import pyarrow
    import sklearn
    import skops

    try:
        dp_library = {"diffprivlib": version("diffprivlib")}
    except PackageNotFoundError:
        dp_library = {}
    return {
        **dp_library,
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "skops": skops.__version__,
    }


def canonical_json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def report_hash(report: dict) -> str:
    """sha-256 of the report's canonical JSON, as 0x hex: what the settlement records."""
    return "0x" + hashlib.sha256(canonical_json(report)).hexdigest()


def model_card(*, run: dict, report: dict) -> str:
    metrics = "\n".join(f"| {name} | {value:.4f} |" for name, value in report["metrics"].items())
    datasets = "\n".join(
        f"| {d['listing_id']} | {d['title']} | {d['owner']} | {d['contribution']:.4f} "
        f"| {d['amount_wei']} |"
        for d in report["datasets"]
    )
    rule = report.get("privacy") or {}
    excluded = "\n".join(
        f"- `{x['column']}`: {x['reason']}" for x in rule.get("excluded_columns", [])
    )
    dp = report.get("differential_privacy")
    dp_line = (
        f"- Differential privacy: ε = {dp['epsilon']:g} (δ = 0), {dp['mechanism']}; "
        f"{dp['library']}. It covers {dp['covers']}."
        if dp
        else "- Differential privacy: none (a plain fit)"
    )
    audit = (
        f"- Leakage audit: membership-inference AUC {report['membership_inference_auc']:.2f} "
        "(loss threshold; 0.5 = nothing learnt about who was in the training set)"
    )
    return f"""# Model card: training run {run["id"]}

- Task: {run["task"]}, target column `{run["target"]}`
- Estimator: {run["model"]} in a scikit-learn pipeline (imputation, scaling, one-hot encoding)
- Split: {int(run["test_fraction"] * 100)} % held out for testing, seed {run["seed"]}
- Trained by code version `{report["code_version"]}`
- Saved with skops {report["libraries"]["skops"]}; load it with `skops.io.load(path, trusted=...)`
- Model fingerprint `{report.get("model_fingerprint", "")}` (the same for every save of this
  model; `training.artifacts.model_fingerprint` of the downloaded file gives it back)

## Privacy

{dp_line}
{audit}
- No category or class shared by fewer than {rule.get("min_group_rows")} training rows is in the
  model (rarer ones fold into one "other"), and every tree leaf stands for at least
  {rule.get("min_leaf_rows")} rows.
- Columns the model was not allowed to learn from:

{excluded or "- none"}

A model can still memorise what it learnt from its rows; the audit above says how much this one
did.

## Test metrics

| metric | value |
|---|---|
{metrics}

## Training data and what each dataset earned

Valuation method: {report["valuation"]["method"]} (seed {report["valuation"]["seed"]}).

| listing | dataset | owner | contribution | paid (wei) |
|---|---|---|---|---|
{datasets}

The escrow job `{run["job_id"]}` on chain {run["chain_id"]} holds the on-chain lineage: its funding
event names the datasets, its settlement event names this model's CID and the report's hash.
"""
