"""Training runs: commission (validate + quote), funding, the run itself, settlement, refund.

State machine (only these functions move it, with guarded updates):

    awaiting_payment -> funded -> running -> settling -> completed
                              \\-> failed (the escrow refunded)
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import status
from web3 import Web3

from chain.events import ChainEvent
from chain.wrappers import DatasetRegistry, JobTerms, TrainingEscrow
from datasets.models import Dataset
from marketplace.errors import ApplicationError
from marketplace.models import User
from training import catalog
from training.models import TrainingRun, TrainingRunDataset
from training.payouts import Payout, payees_and_amounts, payouts_for

logger = logging.getLogger(__name__)

MAX_DATASETS = 10
MIN_ROWS = 30
NUMERIC = {"integer", "float"}
DATASET_COLUMN = "__dataset__"


class RunFailed(Exception):
    """A permanent failure of a run: the message is shown to the buyer."""


def _refuse(message: str, code: str, http_status: int = status.HTTP_400_BAD_REQUEST):
    return ApplicationError(message, {"code": code}, status_code=http_status)


# --- Commission --------------------------------------------------------------------------------


def _type_family(column_type: str) -> str:
    return "number" if column_type in NUMERIC else column_type


def _combined_schema(datasets: list[Dataset], target: str) -> tuple[list[str], dict[str, str]]:
    """The feature columns all datasets share, with compatible types; raises on a conflict."""
    by_dataset = [{c["name"]: c for c in d.columns} for d in datasets]
    for dataset, columns in zip(datasets, by_dataset, strict=True):
        if target not in columns:
            raise _refuse(
                f"The target column {target!r} is missing from dataset {dataset.pk} "
                f"({dataset.title}).",
                "missing_target",
            )
    shared = [name for name in by_dataset[0] if all(name in cols for cols in by_dataset[1:])]
    families = {}
    for name in shared:
        kinds = {_type_family(cols[name]["type"]) for cols in by_dataset}
        if len(kinds) > 1:
            raise _refuse(
                f"Column {name!r} has incompatible types across the datasets "
                f"({', '.join(sorted(kinds))}).",
                "incompatible_schemas",
            )
        families[name] = kinds.pop()
    features = [name for name in shared if name != target]
    if not features:
        raise _refuse("The datasets share no column besides the target.", "incompatible_schemas")
    return features, families


def _target_classes(datasets: list[Dataset], target: str) -> dict[str, int] | None:
    """Exact class counts of the target across datasets, when the profiles hold them."""
    counts: dict[str, int] = {}
    for dataset in datasets:
        column = next(c for c in dataset.columns if c["name"] == target)
        if not column.get("top_values_exact") or "top_values" not in column:
            return None
        if column["distinct"] > len(column["top_values"]):
            return None
        for entry in column["top_values"]:
            counts[str(entry["value"])] = counts.get(str(entry["value"]), 0) + entry["count"]
    return counts


def _infer_task(datasets: list[Dataset], target: str, family: str) -> str:
    if family != "number":
        return catalog.CLASSIFICATION
    columns = [next(c for c in d.columns if c["name"] == target) for d in datasets]
    if all(c["type"] == "integer" for c in columns) and max(c["distinct"] for c in columns) <= (
        catalog.MAX_CLASSES_FOR_INTEGER_TARGET
    ):
        return catalog.CLASSIFICATION
    return catalog.REGRESSION


@transaction.atomic
def training_run_create(
    *,
    buyer: User,
    dataset_ids: list[int],
    target_column: str,
    model: str,
    task: str | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
) -> TrainingRun:
    """Validate a commission and quote it from the escrow; the buyer then pays from their wallet."""
    if not buyer.address:
        raise _refuse("Sign in with a wallet to commission a model.", "no_wallet", 403)
    if not dataset_ids:
        raise _refuse("Choose at least one dataset.", "no_datasets")
    if len(set(dataset_ids)) != len(dataset_ids):
        raise _refuse("A dataset is listed twice.", "duplicate_dataset")
    if len(dataset_ids) > MAX_DATASETS:
        raise _refuse(f"A run combines at most {MAX_DATASETS} datasets.", "too_many_datasets")
    found = {d.pk: d for d in Dataset.objects.filter(pk__in=dataset_ids).select_related("owner")}
    missing = [i for i in dataset_ids if i not in found]
    if missing:
        raise _refuse(f"Unknown dataset {', '.join(map(str, missing))}.", "unknown_dataset")
    unlisted = [i for i in dataset_ids if found[i].status != Dataset.Status.LISTED]
    if unlisted:
        raise _refuse(
            f"Dataset {', '.join(map(str, unlisted))} is not listed: only listed datasets can "
            "be trained on.",
            "unlisted_dataset",
        )
    datasets = [found[i] for i in dataset_ids]
    target_column = (target_column or "").strip()
    if not target_column:
        raise _refuse("Name the target column to predict.", "missing_target")
    features, families = _combined_schema(datasets, target_column)
    inferred = _infer_task(datasets, target_column, families[target_column])
    task = task or inferred
    if task not in catalog.MODELS:
        raise _refuse("The task must be classification or regression.", "bad_task")
    if task == catalog.REGRESSION and families[target_column] != "number":
        raise _refuse(
            f"The target {target_column!r} is not numeric, so it cannot be a regression target.",
            "bad_task",
        )
    if model not in catalog.MODELS[task]:
        raise _refuse(
            f"Unknown model {model!r} for {task}: choose one of {', '.join(catalog.MODELS[task])}.",
            "unknown_model",
        )
    test_fraction = 0.25 if test_fraction is None else float(test_fraction)
    if not 0.05 <= test_fraction <= 0.5:
        raise _refuse("The test fraction must be between 0.05 and 0.5.", "bad_test_fraction")
    rows = sum(d.rows or 0 for d in datasets)
    if rows < MIN_ROWS:
        raise _refuse(
            f"The datasets hold {rows} rows; a run needs at least {MIN_ROWS}.", "too_few_rows"
        )
    if task == catalog.CLASSIFICATION and inferred == catalog.REGRESSION:
        raise _refuse(
            f"The target {target_column!r} holds continuous numbers: it is a regression target, "
            "not classes. Choose regression.",
            "bad_task",
        )
    if task == catalog.CLASSIFICATION:
        classes = _target_classes(datasets, target_column)
        if classes is not None:
            if len(classes) < 2:
                raise _refuse(
                    f"The target {target_column!r} has a single class; a classifier needs two.",
                    "single_class",
                )
            rare = sorted(c for c, n in classes.items() if n < 2)
            if rare:
                raise _refuse(
                    f"Class {', '.join(rare)} of {target_column!r} has fewer than two rows.",
                    "too_few_rows",
                )

    escrow = TrainingEscrow.deployed()
    listing_ids = [d.listing_id for d in datasets]
    quote = escrow.quote(listing_ids)
    fees = escrow.fees()
    run = TrainingRun(
        buyer=buyer,
        job_id=secrets.token_hex(32),
        target_column=target_column,
        task=task,
        model=model,
        test_fraction=test_fraction,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        price_wei=quote.price_wei,
        compute_fee_wei=fees.compute_fee_wei,
    )
    run.full_clean()
    run.save()
    TrainingRunDataset.objects.bulk_create(
        TrainingRunDataset(
            run=run,
            dataset=d,
            position=i,
            listing_id=d.listing_id,
            owner_address=d.owner.address,
            price_wei=d.price_wei,
        )  # fmt: skip
        for i, d in enumerate(datasets)
    )
    return run


def training_run_escrow_request(run: TrainingRun) -> dict:
    """What the buyer's wallet sends: `fund(jobId, datasetIds)` with the exact value."""
    listing_ids = list(run.inputs.order_by("position").values_list("listing_id", flat=True))
    tx = TrainingEscrow.for_requests().request(
        "fund", bytes.fromhex(run.job_id), listing_ids, value=int(run.price_wei)
    )
    return {
        "chain_id": tx.chain_id,
        "address": tx.to,
        "value_wei": str(tx.value_wei),
        "data": tx.data,
    }


# --- Funding -------------------------------------------------------------------------------------


def training_run_funding_record(w3: Web3, event: ChainEvent) -> None:
    """Indexer handler for JobFunded (and the client's funding hint): queue the run once."""
    job_id = event.args["jobId"].removeprefix("0x")
    run = TrainingRun.objects.filter(job_id=job_id).first()
    if run is None:
        logger.info("JobFunded for job %s that is not ours", job_id)
        return
    expected = list(run.inputs.order_by("position").values_list("listing_id", flat=True))
    updated = TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.AWAITING_PAYMENT
    ).update(
        status=TrainingRun.Status.FUNDED,
        funded_value_wei=event.args["value"],
        fee_wei=event.args["fee"],
        refund_after=event.args["refundAfter"],
        funding_tx=event.tx_hash,
        funding_block=event.block_number,
        stage="queued",
    )
    if not updated:
        return  # seen before

    if event.args["datasetIds"] != expected:
        # Someone funded this job id for other datasets: give the money back, train nothing.
        transaction.on_commit(lambda: training_run_fail_and_refund_async(run.pk,
            "The payment named other datasets than this run; it was refunded."))  # fmt: skip
        return
    transaction.on_commit(lambda: training_run_enqueue(run.pk))


def training_run_enqueue(run_id: int) -> None:
    """Queue a run. The time limits travel with the message (the worker applies the sender's)."""
    from training.tasks import run_training

    soft = settings.TRAINING_SOFT_TIME_LIMIT_SECONDS
    run_training.apply_async(
        args=[run_id],
        queue=settings.CELERY_TRAINING_QUEUE,
        soft_time_limit=soft,
        time_limit=soft + 60,
    )


def training_run_fail_and_refund_async(run_id: int, reason: str) -> None:
    from training.tasks import fail_and_refund

    fail_and_refund.delay(run_id, reason)


def training_run_funding_hint(*, run: TrainingRun, tx_hash: str) -> TrainingRun:
    """The buyer's client says it paid in `tx_hash`: read that receipt now rather than wait for
    the indexer. Only a JobFunded event of this run's job counts."""
    from chain.events import events_of_mined_transaction

    w3, events = events_of_mined_transaction(tx_hash)
    funded = [
        e for e in events
        if e.name == "JobFunded" and e.args["jobId"].removeprefix("0x") == run.job_id
    ]  # fmt: skip
    if not funded:
        raise _refuse("That transaction did not fund this run.", "not_this_run")
    with transaction.atomic():
        training_run_funding_record(w3, funded[0])
    run.refresh_from_db()
    return run


# --- The run -------------------------------------------------------------------------------------


STAGES = [
    ("fetching", "Fetching and decrypting the datasets", 5),
    ("combining", "Combining the datasets", 25),
    ("training", "Training the model", 30),
    ("valuing", "Measuring each dataset's contribution", 60),
    ("packaging", "Saving, encrypting and pinning the model", 75),
    ("settling", "Paying the contributors on-chain", 90),
]


def _stage(run: TrainingRun, name: str, progress: int | None = None) -> None:
    start = dict((s, p) for s, _, p in STAGES)[name]
    done = [s for s, _, p in STAGES if p < start]
    TrainingRun.objects.filter(pk=run.pk).update(
        stage=name, progress=progress if progress is not None else start, stages_done=done
    )


def _job_terms(run: TrainingRun) -> JobTerms:
    return JobTerms(
        job_id=bytes.fromhex(run.job_id), buyer=run.buyer.address,
        value_wei=int(run.funded_value_wei), fee_wei=int(run.fee_wei),
        refund_after=int(run.refund_after),
    )  # fmt: skip


def _load_dataset(
    entry: TrainingRunDataset, registry: DatasetRegistry, workdir: Path
) -> pd.DataFrame:
    """Ciphertext from IPFS by CID, its hash checked against the on-chain listing, decrypted
    here in the worker only."""
    from training.data import ContentMismatch, dataset_plaintext_path

    listed = registry.listed_event(entry.listing_id)
    if listed is None:
        raise RunFailed(f"Listing {entry.listing_id} is not on the chain.")
    on_chain_hash = listed.args["contentHash"].removeprefix("0x")
    try:
        path = dataset_plaintext_path(entry.dataset, workdir, expected_sha256=on_chain_hash)
    except ContentMismatch as exc:
        raise RunFailed(str(exc)) from exc
    if entry.dataset.file_format == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


@dataclass
class _Packaged:
    model_cid: str
    model_sha256: str
    wrapped_key: bytes
    report: dict
    report_hash: str


def training_run_execute(run_id: int) -> None:
    """The whole run, resumable: a redelivered task continues from what the row records."""
    run = TrainingRun.objects.select_related("buyer").get(pk=run_id)
    if run.status in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED):
        return
    if run.status == TrainingRun.Status.AWAITING_PAYMENT:
        return
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.FUNDED).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now()
    )
    run.refresh_from_db()
    if not run.model_cid or not run.report_hash:
        packaged = _train_and_package(run)
        TrainingRun.objects.filter(pk=run.pk).update(
            model_cid=packaged.model_cid, model_sha256=packaged.model_sha256,
            wrapped_model_key=packaged.wrapped_key, report=packaged.report,
            report_hash=packaged.report_hash, metrics=packaged.report["metrics"],
            figures=packaged.report["figures"],
        )  # fmt: skip
        for entry in packaged.report["datasets"]:
            TrainingRunDataset.objects.filter(run=run, listing_id=entry["listing_id"]).update(
                contribution=entry["contribution"], amount_wei=int(entry["amount_wei"])
            )
        run.refresh_from_db()
    _settle(run)


def _train_and_package(run: TrainingRun) -> _Packaged:
    from training import ml, valuation  # scikit-learn: loaded by the workers that train only

    registry = DatasetRegistry.deployed()
    inputs = list(run.inputs.select_related("dataset").order_by("position"))
    with tempfile.TemporaryDirectory(dir=settings.DATA_DIR, prefix="run-") as tmp:
        workdir = Path(tmp)
        _stage(run, "fetching")
        frames = []
        for i, entry in enumerate(inputs):
            frame = _load_dataset(entry, registry, workdir)
            frame[DATASET_COLUMN] = entry.listing_id
            frames.append(frame)
            _stage(run, "fetching", 5 + int(20 * (i + 1) / len(inputs)))

        _stage(run, "combining")
        shared = [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]
        combined = pd.concat([f[shared] for f in frames], ignore_index=True)
        combined = combined.dropna(subset=[run.target_column]).reset_index(drop=True)
        owners = combined.pop(DATASET_COLUMN).to_numpy()
        if len(combined) < MIN_ROWS:
            raise RunFailed(
                f"Only {len(combined)} rows have a target value; at least {MIN_ROWS} are needed."
            )

        _stage(run, "training")
        try:
            result = ml.fit_and_score(
                combined, target=run.target_column, task=run.task, model=run.model,
                test_fraction=run.test_fraction, seed=run.seed,
            )  # fmt: skip
        except ValueError as exc:
            raise RunFailed(f"The model could not be trained on this data: {exc}") from exc

        _stage(run, "valuing")
        preprocess = result.pipeline.named_steps["preprocess"]
        features = combined.drop(columns=[run.target_column])
        target = combined[run.target_column].to_numpy()
        values = valuation.value_datasets(
            train_x=preprocess.transform(features.iloc[result.train_index]),
            train_y=target[result.train_index],
            train_dataset=owners[result.train_index],
            test_x=preprocess.transform(features.iloc[result.test_index]),
            test_y=target[result.test_index],
            task=run.task,
            seed=run.seed,
        )
        payouts = payouts_for(
            distributable_wei=int(run.funded_value_wei) - int(run.fee_wei),
            datasets=[(e.listing_id, e.owner_address, int(e.price_wei)) for e in inputs],
            contributions=values.contributions,
        )

        _stage(run, "packaging")
        return _package(run, inputs, result, values, payouts, workdir)


def _package(run, inputs, result, values, payouts, workdir: Path) -> _Packaged:
    from datasets.storage import normalize_cid, pin_file, raw_cid_for_sha256
    from marketplace.crypto import encrypt_stream, new_data_key, wrap_data_key
    from training import artifacts

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
        "figures": result.figures,
        "valuation": {
            "method": values.method,
            "k": values.k,
            "seed": run.seed,
            "train_rows_used": values.train_rows_used,
            "test_rows_used": values.test_rows_used,
            "payout_rule": "half by price, half by positive contribution (training/payouts.py)",
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
    context = f"model:{run.job_id}".encode()
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
    return _Packaged(
        model_cid=model_cid,
        model_sha256=sealed_sha256,
        wrapped_key=wrap_data_key(data_key, settings.MASTER_KEY, context=context),
        report=report,
        report_hash=report_hash,
    )


def _settle(run: TrainingRun) -> None:
    if run.settlement_tx:
        TrainingRun.objects.filter(pk=run.pk).exclude(status=TrainingRun.Status.COMPLETED).update(
            status=TrainingRun.Status.COMPLETED, stage="done", progress=100
        )
        return
    _stage(run, "settling")
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
        status=TrainingRun.Status.SETTLING
    )
    # The amounts are the report's, which the hash on-chain commits to.
    recorded = [
        Payout(d["listing_id"], d["owner"], d["contribution"], int(d["amount_wei"]))
        for d in run.report["datasets"]
    ]
    payees, amounts = payees_and_amounts(recorded)
    escrow = TrainingEscrow.deployed()
    outcome = escrow.settle(
        job=_job_terms(run), payees=payees, amounts=amounts,
        model_cid=run.model_cid, report_hash=bytes.fromhex(run.report_hash[2:]),
    )  # fmt: skip
    if not outcome.succeeded:
        raise RunFailed(f"The escrow refused the settlement (transaction {outcome.tx_hash}).")
    from training.earnings import earning_record

    timestamps: dict[int, int] = {}
    for event in outcome.events:
        if event.name == "PayeeCredited":  # the contributors see it now, not at the next index
            earning_record(escrow.w3, event, timestamps)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.COMPLETED, stage="done", progress=100,
        stages_done=[s for s, _, _ in STAGES], settlement_tx=outcome.tx_hash,
        settlement_block=outcome.block_number, finished_at=timezone.now(),
    )  # fmt: skip


def training_run_fail_and_refund(run_id: int, reason: str) -> None:
    """A permanent failure: record the reason and give the buyer their money back."""
    from chain.wrappers import JobState

    run = TrainingRun.objects.select_related("buyer").get(pk=run_id)
    if run.status in (TrainingRun.Status.COMPLETED, TrainingRun.Status.AWAITING_PAYMENT):
        return
    # The reason shows at once; the run is marked failed when the money is back.
    TrainingRun.objects.filter(pk=run.pk).update(error=reason)
    refund_tx = run.refund_tx
    if not refund_tx and run.funded_value_wei is not None:
        escrow = TrainingEscrow.deployed()
        if escrow.job_state(bytes.fromhex(run.job_id)) == JobState.FUNDED:
            refund_tx = escrow.refund(job=_job_terms(run)).tx_hash
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.FAILED, refund_tx=refund_tx, finished_at=timezone.now()
    )


def report_json(run: TrainingRun) -> bytes:
    """The report exactly as pinned: its sha-256 is the report hash of the settlement."""
    from training import artifacts

    return artifacts.canonical_json(run.report)
