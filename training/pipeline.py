"""The work of a training run, apart from its state machine in `training.services`: read the
job's spec from the chain and IPFS, fetch and decrypt the datasets (through the datasets app's
reader, so the rows are the listing's), run the computation (`training.compute`: combine, fit,
score, value, pay, report), package the model and the report (encrypted, pinned), and settle on
the escrow. Runs in the training worker; moves no status."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from chain.wrappers import DatasetRegistry, JobTerms, Outcome, TrainingEscrow
from marketplace.processes import pid_alive
from training.compute import MIN_ROWS, ListingFacts, OnStage, RunFailed, RunSpec  # noqa: F401
from training.models import TrainingRun, TrainingRunDataset

Stage = TrainingRun.Stage


@dataclass
class Packaged:
    """A run's artifacts: recorded once per job, they are what the settlement commits to."""

    model_cid: str
    model_sha256: str  # of the ciphertext pinned under model_cid
    wrapped_key: bytes
    report: dict
    report_hash: str
    spec: dict = field(default_factory=dict)  # RunSpec.as_dict() of what the report computed


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


def model_data_key(job_id: str) -> bytes:
    """The key a run's model is encrypted under: derived from the master key and the job id, so
    the buyer's model opens again in a database rebuilt from the chain."""
    from marketplace.crypto import derived_key

    return derived_key(settings.MASTER_KEY, context=model_key_context(job_id))


def dp_seed_context(job_id: str) -> bytes:
    return f"dp-seed:{job_id}".encode()


# --- the spec, the rows --------------------------------------------------------------------------


def _deployment_block(address: str) -> int:
    """Where a contract's events start (its deployment block): no log search from block 0."""
    from chain.models import Deployment

    found = Deployment.objects.filter(address=address).values_list("block_number", flat=True)
    return found.first() or 0


def run_spec(run: TrainingRun) -> RunSpec:
    """What the run computes from: the job's terms as its JobFunded event committed them, each
    listing's on-chain record and metadata at the funding block, the buyer's options, and the
    marketplace's privacy minimums and code version."""
    from training import artifacts
    from training.compute import spec_from_chain

    if run.funding_block is None:
        raise RunFailed("The run's payment was not recorded.")
    registry = DatasetRegistry.deployed()
    return spec_from_chain(
        TrainingEscrow.deployed(), registry, terms=job_terms(run),
        funding_block=run.funding_block, from_block=_deployment_block(registry.address),
        options={
            "task": run.task, "target": run.target_column, "model": run.model,
            "test_fraction": run.test_fraction, "seed": run.seed, "dp_epsilon": run.dp_epsilon,
            "curate": run.curate, "min_group_rows": settings.PRIVACY_MIN_GROUP_ROWS,
            "min_leaf_rows": settings.PRIVACY_MIN_LEAF_ROWS,
            "code_version": artifacts.code_version(),
        },
    )  # fmt: skip


def _data_key(entry: TrainingRunDataset, facts: ListingFacts) -> bytes:
    """The data key the marketplace keeps for the listing's bytes (workers only)."""
    dataset = entry.dataset
    if (dataset.cid, dataset.content_sha256) != (facts.cid, facts.content_sha256):
        # The data key is the one of the bytes the record names.
        raise RunFailed(
            f"The bytes of dataset {dataset.pk} as the marketplace recorded them do not match "
            f"the hash recorded on-chain for listing {facts.listing_id}."
        )
    return dataset.data_key()


def _read(facts: ListingFacts, data_key: bytes, workdir: Path):
    """The listing's rows as a DataFrame, decrypted here in the worker only
    (`training.compute.read_listing`)."""
    from datasets.listed import ContentMismatch
    from training.compute import read_listing

    try:
        return read_listing(facts, data_key, workdir)
    except ContentMismatch as exc:
        raise RunFailed(str(exc)) from exc


# --- compute, package ----------------------------------------------------------------------------


def train_and_package(
    run: TrainingRun,
    *,
    on_stage: OnStage,
    dp_seed: bytes | None = None,
    on_spec: Callable[[RunSpec, dict[int, bytes]], None] | None = None,
) -> Packaged:
    """Everything up to the settlement; the decrypted rows live in a private folder that is
    removed when this returns or raises. `dp_seed`: a DP run's secret noise seed. `on_spec` is
    given the run's spec and the datasets' data keys before any row is read (the validators'
    requests are made from them, so they start while the worker trains)."""
    from training.compute import compute

    inputs = list(run.inputs.select_related("dataset").order_by("position"))
    with tempfile.TemporaryDirectory(dir=settings.DATA_DIR, prefix=workdir_prefix()) as tmp:
        workdir = Path(tmp)
        on_stage(Stage.FETCHING, None)
        spec = run_spec(run)
        if [f.listing_id for f in spec.listings] != [e.listing_id for e in inputs]:
            raise RunFailed("The payment named other datasets than this run.")
        keys = {
            facts.listing_id: _data_key(entry, facts)
            for entry, facts in zip(inputs, spec.listings, strict=True)
        }
        if on_spec is not None:
            on_spec(spec, keys)
        tables = []
        for i, facts in enumerate(spec.listings):
            tables.append(_read(facts, keys[facts.listing_id], workdir))
            on_stage(Stage.FETCHING, 5 + int(20 * (i + 1) / len(inputs)))
        computed = compute(spec, tables, dp_seed=dp_seed, on_stage=on_stage)
        on_stage(Stage.PACKAGING, None)
        return _package(run, spec, computed, workdir)


def _package(run: TrainingRun, spec: RunSpec, computed, workdir: Path) -> Packaged:
    """The model encrypted under its job's key and pinned; the report pinned as one raw block, so
    its CID follows from the hash the settlement records and anyone can fetch it knowing only
    the chain."""
    from marketplace.crypto import encrypt_stream, wrap_data_key
    from marketplace.ipfs import normalize_cid, pin_file, raw_cid_for_sha256

    data_key = model_data_key(run.job_id)
    plain, sealed = workdir / "model.skops", workdir / "model.skops.enc"
    plain.write_bytes(computed.model_bytes)
    with plain.open("rb") as src, sealed.open("wb") as dst:
        _, sealed_sha256 = encrypt_stream(src, dst, data_key)
    os.unlink(plain)
    model_cid = pin_file(sealed)
    report_file = workdir / "report.json"
    report_file.write_bytes(computed.report_bytes)
    pinned = normalize_cid(pin_file(report_file, raw_single_block=True))
    if pinned != raw_cid_for_sha256(computed.report_hash[2:]):
        raise RunFailed("The valuation report is too large to pin as one block.")
    return Packaged(
        model_cid=model_cid,
        model_sha256=sealed_sha256,
        wrapped_key=wrap_data_key(
            data_key, settings.MASTER_KEY, context=model_key_context(run.job_id)
        ),
        report=computed.report,
        report_hash=computed.report_hash,
        spec=spec.as_dict(),
    )


def discard(packaged: Packaged, *, keep: set[str]) -> None:
    """Unpin a package that lost the race to be recorded (another delivery recorded first)."""
    from marketplace.ipfs import raw_cid_for_sha256, unpin

    for cid in {packaged.model_cid, raw_cid_for_sha256(packaged.report_hash[2:])} - keep:
        unpin(cid)


# --- settle and refund on the escrow -----------------------------------------------------------


def settle(run: TrainingRun, signatures: list[bytes]) -> Outcome:
    """Send the settlement the recorded report commits to, one amount per dataset, credited by
    the escrow to the owner it committed at funding, with the validators' attestations of it
    (once per job: a retry follows the same transaction)."""
    job = job_terms(run)
    datasets = run.report["datasets"]
    if tuple(d["listing_id"] for d in datasets) != job.dataset_ids:
        raise RunFailed("The report's datasets are not the ones the payment was for.")
    return TrainingEscrow.deployed().settle(
        job=job, amounts=[int(d["amount_wei"]) for d in datasets], model_cid=run.model_cid,
        report_hash=bytes.fromhex(run.report_hash[2:]), signatures=signatures,
    )  # fmt: skip


def refund(run: TrainingRun) -> Outcome:
    return TrainingEscrow.deployed().refund(job=job_terms(run))
