"""The work of a training run, apart from its state machine in `training.services`: fetch and
decrypt the datasets (through the datasets app's reader, so the rows are the listing's), combine
them, fit and score the model, value each dataset, package the model and the report (encrypted,
pinned), and settle on the escrow. Runs in the training worker; moves no status."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from chain.wrappers import DatasetRegistry, JobTerms, Outcome, TrainingEscrow
from marketplace.processes import pid_alive
from training.models import TrainingRun, TrainingRunDataset
from training.payouts import payouts_for

MIN_ROWS = 30
DATASET_COLUMN = "__dataset__"
Stage = TrainingRun.Stage
OnStage = Callable[[str, int | None], None]  # (stage, progress percent or None for its start)


class RunFailed(Exception):
    """A permanent failure of a run: the message is shown to the buyer."""


@dataclass
class Packaged:
    """A run's artifacts: recorded once per job, they are what the settlement commits to."""

    model_cid: str
    model_sha256: str
    wrapped_key: bytes
    report: dict
    report_hash: str


def job_terms(run: TrainingRun) -> JobTerms:
    """The job's terms as the escrow committed them: the buyer's JobFunded event in the funding
    transaction (datasets and owners included), which settle and refund pass back."""
    from web3 import Web3

    from chain.client import deployed_addresses, get_web3
    from chain.events import decode_receipt

    w3 = get_web3()
    receipt = w3.eth.get_transaction_receipt(run.funding_tx)
    buyer = Web3.to_checksum_address(run.buyer.address)
    for event in decode_receipt(w3, receipt, deployed_addresses()):
        if (
            event.name == "JobFunded"
            and event.args["jobId"].removeprefix("0x") == run.job_id
            and event.args["buyer"] == buyer
        ):
            return JobTerms.from_event(event)
    raise RunFailed(f"The funding transaction {run.funding_tx} did not fund this run's job.")


# A run's scratch folder names its host and process, so a worker starting later can tell the
# folders of processes that died (killed mid-run) from those of live ones.
WORKDIR_PATTERN = re.compile(r"^run-(?P<host>[A-Za-z0-9.]+)-(?P<pid>\d+)-")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname()) or "host"


def workdir_prefix() -> str:
    return f"run-{_host()}-{os.getpid()}-"


def remove_orphan_workdirs() -> list[Path]:
    """Remove the scratch folders (decrypted rows) of runs whose process is gone: those this
    host's dead processes left, and unnamed ones older than a run may take."""
    host = _host()
    stale_after = 2 * settings.TRAINING_SOFT_TIME_LIMIT_SECONDS
    removed = []
    for path in Path(settings.DATA_DIR).glob("run-*"):
        if not path.is_dir():
            continue
        match = WORKDIR_PATTERN.match(path.name)
        if match:
            if match["host"] != host or pid_alive(int(match["pid"])):
                continue
        elif time.time() - path.stat().st_mtime < stale_after:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def model_key_context(job_id: str) -> bytes:
    return f"model:{job_id}".encode()


# --- fetch, decrypt, combine ---------------------------------------------------------------------


def _load_dataset(entry: TrainingRunDataset, registry: DatasetRegistry, workdir: Path):
    """The dataset's rows as a DataFrame: ciphertext from IPFS by CID, its hash checked against
    the on-chain listing, decrypted here in the worker only and read as the listing read it."""
    from datasets.selectors import ContentMismatch, dataset_rows

    listed = registry.listed_event(entry.listing_id)
    if listed is None:
        raise RunFailed(f"Listing {entry.listing_id} is not on the chain.")
    on_chain_hash = listed.args["contentHash"].removeprefix("0x")
    try:
        table = dataset_rows(dataset=entry.dataset, workdir=workdir, expected_sha256=on_chain_hash)
    except ContentMismatch as exc:
        raise RunFailed(str(exc)) from exc
    return table.to_pandas()


def _combine(run: TrainingRun, frames: list):
    import pandas as pd

    shared = [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]
    combined = pd.concat([f[shared] for f in frames], ignore_index=True)
    combined = combined.dropna(subset=[run.target_column]).reset_index(drop=True)
    owners = combined.pop(DATASET_COLUMN).to_numpy()
    if len(combined) < MIN_ROWS:
        raise RunFailed(
            f"Only {len(combined)} rows have a target value; at least {MIN_ROWS} are needed."
        )
    return combined, owners


# --- fit, value, package -------------------------------------------------------------------------


def train_and_package(run: TrainingRun, *, on_stage: OnStage) -> Packaged:
    """Everything up to the settlement; the decrypted rows live in a private folder that is
    removed when this returns or raises."""
    from training import ml, privacy  # scikit-learn: loaded by the trainers only

    registry = DatasetRegistry.deployed()
    inputs = list(run.inputs.select_related("dataset").order_by("position"))
    with tempfile.TemporaryDirectory(dir=settings.DATA_DIR, prefix=workdir_prefix()) as tmp:
        workdir = Path(tmp)
        on_stage(Stage.FETCHING, None)
        frames = []
        for i, entry in enumerate(inputs):
            frame = _load_dataset(entry, registry, workdir)
            frame[DATASET_COLUMN] = entry.listing_id
            frames.append(frame)
            on_stage(Stage.FETCHING, 5 + int(20 * (i + 1) / len(inputs)))

        on_stage(Stage.COMBINING, None)
        combined, owners = _combine(run, frames)
        combined, excluded = _without_identifying_columns(run, inputs, combined)

        on_stage(Stage.TRAINING, None)
        dp = None
        if run.dp_epsilon is not None:  # bounds from the listings' public statistics only
            columns = [e.dataset.columns for e in inputs]
            dp = privacy.DPRequest(
                epsilon=run.dp_epsilon,
                classes=privacy.public_classes(columns, run.target_column),
            )
        try:
            result = ml.fit_and_score(
                combined, target=run.target_column, task=run.task, model=run.model,
                test_fraction=run.test_fraction, seed=run.seed, dp=dp,
                min_group_rows=settings.PRIVACY_MIN_GROUP_ROWS,
                min_leaf_rows=settings.PRIVACY_MIN_LEAF_ROWS,
                owners=owners, credited=_credited(combined, owners), curate=run.curate,
                on_valuing=lambda: on_stage(Stage.VALUING, None),
            )  # fmt: skip
        except ValueError as exc:
            raise RunFailed(f"The model could not be trained on this data: {exc}") from exc
        payouts = payouts_for(
            distributable_wei=int(run.funded_value_wei) - int(run.fee_wei),
            datasets=[(e.listing_id, e.owner_address, int(e.price_wei)) for e in inputs],
            contributions=result.valuation.contributions,
        )

        on_stage(Stage.PACKAGING, None)
        return _package(run, inputs, result, payouts, excluded, workdir)


def _credited(combined, owners):
    """Whether each row is credited to its own dataset: each distinct row (the listing's copy
    check's row signature: numbers within about 0.1 %) once, to the earliest listing of the run
    holding it (the lowest listing id)."""
    from datasets.copycats import row_keys
    from training.valuation import credited_to_earliest

    return credited_to_earliest(row_keys(combined), owners)


def _without_identifying_columns(run: TrainingRun, inputs, combined):
    """The combined rows without the columns that identify people or rows (unless every owner
    who listed them opted them in), and which were left out and why."""
    from training.features import excluded_columns, listed_columns

    listings = [listed_columns(e.dataset) for e in inputs]
    excluded = excluded_columns(combined, target=run.target_column, listings=listings)
    combined = combined.drop(columns=[x["column"] for x in excluded])
    if combined.shape[1] < 2:
        raise RunFailed(
            "No column is left to learn from: every column besides the target identifies people "
            "or rows (" + "; ".join(f"{x['column']}: {x['reason']}" for x in excluded) + ")."
        )
    return combined, excluded


def _package(run, inputs, result, payouts, excluded, workdir: Path) -> Packaged:
    from marketplace.crypto import encrypt_stream, new_data_key, wrap_data_key
    from marketplace.ipfs import normalize_cid, pin_file, raw_cid_for_sha256
    from training import artifacts, valuation

    values = result.valuation
    model_bytes = artifacts.model_to_bytes(result.pipeline)
    by_listing = {p.dataset_id: p for p in payouts}
    report = {
        "run": run.pk,
        "job_id": "0x" + run.job_id,
        "chain_id": settings.CHAIN_ID,
        "escrow": TrainingEscrow.deployed().address,
        "task": run.task,
        "target": run.target_column,
        "model": run.model,
        "test_fraction": run.test_fraction,
        "metrics": {k: round(v, 6) for k, v in result.metrics.items()},
        "privacy": {
            "excluded_columns": excluded,
            "min_group_rows": settings.PRIVACY_MIN_GROUP_ROWS,
            "min_leaf_rows": settings.PRIVACY_MIN_LEAF_ROWS,
            "folded_categories": result.folded_categories,
            "dropped_classes": result.dropped_classes,
        },
        "figures": result.figures,
        "differential_privacy": result.privacy["differential_privacy"],
        "membership_inference_auc": result.privacy["membership_inference_auc"],
        "membership_inference_method": (
            "loss threshold (Yeom et al. 2018): ROC AUC of -loss separating training rows from "
            "held-out test rows; 0.5 means the model tells nothing about who was trained on"
        ),
        "valuation": {
            "method": values.method,
            "parameters": values.params,
            "seed": run.seed,
            "rows_valued": values.rows_valued,
            "description": valuation.DESCRIPTION,
            "curate": run.curate,
            "curation_rule": valuation.CURATION_RULE,
            "benchmark": valuation.BENCHMARK,
            "payout_rule": "half by price, half by positive contribution (training/payouts.py)",
        },
        "excluded_rows": {
            str(e.dataset_id): values.excluded_rows.get(e.listing_id, 0) for e in inputs
        },
        "datasets": [
            {
                "listing_id": e.listing_id,
                "dataset": e.dataset_id,
                "title": e.dataset.title,
                "owner": e.owner_address,
                "content_sha256": e.dataset.content_sha256,
                "contribution": round(by_listing[e.listing_id].contribution, 8),
                "amount_wei": str(by_listing[e.listing_id].amount_wei),
                "excluded_rows": values.excluded_rows.get(e.listing_id, 0),
                "uncredited_rows": values.uncredited_rows.get(e.listing_id, 0),
            }
            for e in inputs
        ],
        "value_wei": str(run.funded_value_wei),
        "fee_wei": str(run.fee_wei),
        "model_plaintext_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "code_version": artifacts.code_version(),
        "libraries": artifacts.library_versions(),
    }
    data_key = new_data_key()
    plain, sealed = workdir / "model.skops", workdir / "model.skops.enc"
    plain.write_bytes(model_bytes)
    with plain.open("rb") as src, sealed.open("wb") as dst:
        _, sealed_sha256 = encrypt_stream(src, dst, data_key)
    os.unlink(plain)
    model_cid = pin_file(sealed)
    report["model_cid"] = model_cid
    report["model_sha256"] = sealed_sha256
    report["model_card"] = artifacts.model_card(
        run={
            "id": run.pk, "task": run.task, "target": run.target_column, "model": run.model,
            "test_fraction": run.test_fraction, "seed": run.seed, "job_id": report["job_id"],
            "chain_id": settings.CHAIN_ID,
        },
        report=report,
    )  # fmt: skip
    # The report as one raw block: its CID follows from the hash the settlement records, so
    # anyone can fetch it knowing only the chain.
    report_file = workdir / "report.json"
    report_file.write_bytes(artifacts.canonical_json(report))
    report_hash = artifacts.report_hash(report)
    pinned = normalize_cid(pin_file(report_file, raw_single_block=True))
    if pinned != raw_cid_for_sha256(report_hash[2:]):
        raise RunFailed("The valuation report is too large to pin as one block.")
    return Packaged(
        model_cid=model_cid,
        model_sha256=sealed_sha256,
        wrapped_key=wrap_data_key(
            data_key, settings.MASTER_KEY, context=model_key_context(run.job_id)
        ),
        report=report,
        report_hash=report_hash,
    )


def discard(packaged: Packaged, *, keep: set[str]) -> None:
    """Unpin a package that lost the race to be recorded (another delivery recorded first)."""
    from marketplace.ipfs import raw_cid_for_sha256, unpin

    for cid in {packaged.model_cid, raw_cid_for_sha256(packaged.report_hash[2:])} - keep:
        unpin(cid)


# --- settle and refund on the escrow -----------------------------------------------------------


def settle(run: TrainingRun) -> Outcome:
    """Send the settlement the recorded report commits to, one amount per dataset, credited by
    the escrow to the owner it committed at funding (once per job: a retry follows the same
    transaction)."""
    job = job_terms(run)
    datasets = run.report["datasets"]
    if tuple(d["listing_id"] for d in datasets) != job.dataset_ids:
        raise RunFailed("The report's datasets are not the ones the payment was for.")
    return TrainingEscrow.deployed().settle(
        job=job, amounts=[int(d["amount_wei"]) for d in datasets], model_cid=run.model_cid,
        report_hash=bytes.fromhex(run.report_hash[2:]),
    )  # fmt: skip


def refund(run: TrainingRun) -> Outcome:
    return TrainingEscrow.deployed().refund(job=job_terms(run))
