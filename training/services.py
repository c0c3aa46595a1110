"""Training runs, the state machine: commission (validate + quote), funding, the run, settlement
and refund. The run's work (fetch, decrypt, combine, fit, value, package, settle) is in
`training.pipeline`. Only these functions move a run, each with a guarded update:

    awaiting_payment -> funded -> running -> settling -> completed
                           \\---------\\----------\\-> refunding -> failed (the escrow refunded)

A settlement mined late is recorded as completed, whatever was recorded meanwhile; the chain's
JobSettled and JobRefunded events (the indexer's) have the last word.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from chain.client import decode_revert
from chain.events import ChainEvent, block_time
from chain.wrappers import TrainingEscrow, settle_intent
from datasets.models import Dataset, dp_epsilon_refusal
from marketplace.errors import node_outage, refuse
from marketplace.ipfs import raw_cid_for_sha256
from marketplace.models import User
from training import catalog, pipeline, privacy
from training.models import TrainingRun, TrainingRunDataset
from training.pipeline import MIN_ROWS, RunFailed

logger = logging.getLogger(__name__)

Status, Stage = TrainingRun.Status, TrainingRun.Stage
MAX_DATASETS = 10
NUMERIC = {"integer", "float"}


# --- Commission --------------------------------------------------------------------------------


def _type_family(column_type: str) -> str:
    return "number" if column_type in NUMERIC else column_type


def _combined_schema(datasets: list[Dataset], target: str) -> tuple[list[str], dict[str, str]]:
    """The feature columns all datasets share, with compatible types; raises on a conflict."""
    by_dataset = [{c["name"]: c for c in d.columns} for d in datasets]
    for dataset, columns in zip(datasets, by_dataset, strict=True):
        if target not in columns:
            raise refuse(
                f"The target column {target!r} is missing from dataset {dataset.pk} "
                f"({dataset.title}).",
                "missing_target",
            )
    shared = [name for name in by_dataset[0] if all(name in cols for cols in by_dataset[1:])]
    families = {}
    for name in shared:
        kinds = {_type_family(cols[name]["type"]) for cols in by_dataset}
        if len(kinds) > 1:
            raise refuse(
                f"Column {name!r} has incompatible types across the datasets "
                f"({', '.join(sorted(kinds))}).",
                "incompatible_schemas",
            )
        families[name] = kinds.pop()
    features = [name for name in shared if name != target]
    if not features:
        raise refuse("The datasets share no column besides the target.", "incompatible_schemas")
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


def _check_target_is_not_identifying(datasets: list[Dataset], target_column: str) -> None:
    """A model stores its target's classes: a column that identifies people or rows is no
    target, unless its owner opted it in as a feature."""
    from training.features import flagged_columns, listed_columns

    for dataset in datasets:
        reason = flagged_columns(listed_columns(dataset)).get(target_column)
        if reason:
            raise refuse(
                f"{target_column!r} was {reason}: a model may not learn to predict it, unless "
                "its owner lets models use it.",
                "identifying_target",
            )


def dp_requirement(datasets: list[Dataset]) -> tuple[float, list[Dataset]] | None:
    """The largest epsilon the owners allow, and the datasets that set it; None if none does."""
    required = [d for d in datasets if d.dp_epsilon_max is not None]
    if not required:
        return None
    strictest = min(d.dp_epsilon_max for d in required)
    return strictest, [d for d in required if d.dp_epsilon_max == strictest]


def _check_privacy(
    datasets: list[Dataset], target: str, task: str, model: str, dp_epsilon: float | None
) -> None:
    """Refuse, before any payment, a run its owners' privacy terms or DP itself cannot allow."""
    requirement = dp_requirement(datasets)
    if requirement is not None:
        strictest, setters = requirement
        named = ", ".join(f"{d.pk} ({d.title})" for d in setters)
        if dp_epsilon is None or dp_epsilon > strictest:
            asked = "none" if dp_epsilon is None else f"ε = {dp_epsilon:g}"
            raise refuse(
                f"Dataset {named} may only be trained on with differential privacy at ε ≤ "
                f"{strictest:g} (dp_epsilon); this run asked for {asked}.",
                "dp_required",
            )
    if dp_epsilon is None:
        return
    if reason := dp_epsilon_refusal(dp_epsilon):
        raise refuse(reason, "bad_dp_epsilon")
    if privacy.dp_version(task, model) is None:
        offered = ", ".join(m for (t, m) in privacy.DP_VERSIONS if t == task)
        choice = f"choose {offered}, or" if offered else "no model of this task has one:"
        raise refuse(
            f"{model} has no differentially private version for {task}: {choice} leave "
            "dp_epsilon out.",
            "no_dp_version",
        )
    columns = [d.columns for d in datasets]
    if task == catalog.CLASSIFICATION and privacy.public_classes(columns, target) is None:
        raise refuse(
            f"Differential privacy needs the classes of {target!r} from the listings' public "
            "statistics, and a listing does not publish them all.",
            "no_public_bounds",
        )


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
    dp_epsilon: float | None = None,
    curate: bool = False,
) -> TrainingRun:
    """Validate a commission and quote it from the escrow; the buyer then pays from their wallet."""
    if not buyer.address:
        raise refuse("Sign in with a wallet to commission a model.", "no_wallet", 403)
    if not dataset_ids:
        raise refuse("Choose at least one dataset.", "no_datasets")
    if len(set(dataset_ids)) != len(dataset_ids):
        raise refuse("A dataset is listed twice.", "duplicate_dataset")
    if len(dataset_ids) > MAX_DATASETS:
        raise refuse(f"A run combines at most {MAX_DATASETS} datasets.", "too_many_datasets")
    found = {d.pk: d for d in Dataset.objects.filter(pk__in=dataset_ids).select_related("owner")}
    missing = [i for i in dataset_ids if i not in found]
    if missing:
        raise refuse(f"There is no dataset {', '.join(map(str, missing))}.", "unknown_dataset", 404)
    unlisted = [i for i in dataset_ids if found[i].status != Dataset.Status.LISTED]
    if unlisted:
        raise refuse(
            f"Dataset {', '.join(map(str, unlisted))} is not listed: only listed datasets can "
            "be trained on.",
            "unlisted_dataset",
        )
    datasets = [found[i] for i in dataset_ids]
    target_column = (target_column or "").strip()
    if not target_column:
        raise refuse("Name the target column to predict.", "missing_target")
    features, families = _combined_schema(datasets, target_column)
    _check_target_is_not_identifying(datasets, target_column)
    inferred = _infer_task(datasets, target_column, families[target_column])
    task = task or inferred
    if task not in catalog.MODELS:
        raise refuse("The task must be classification or regression.", "bad_task")
    if task == catalog.REGRESSION and families[target_column] != "number":
        raise refuse(
            f"The target {target_column!r} is not numeric, so it cannot be a regression target.",
            "bad_task",
        )
    if model not in catalog.MODELS[task]:
        raise refuse(
            f"Unknown model {model!r} for {task}: choose one of {', '.join(catalog.MODELS[task])}.",
            "unknown_model",
        )
    test_fraction = 0.25 if test_fraction is None else float(test_fraction)
    if not 0.05 <= test_fraction <= 0.5:
        raise refuse("The test fraction must be between 0.05 and 0.5.", "bad_test_fraction")
    rows = sum(d.rows or 0 for d in datasets)
    if rows < MIN_ROWS:
        raise refuse(
            f"The datasets hold {rows} rows; a run needs at least {MIN_ROWS}.", "too_few_rows"
        )
    if task == catalog.CLASSIFICATION and inferred == catalog.REGRESSION:
        raise refuse(
            f"The target {target_column!r} holds continuous numbers: it is a regression target, "
            "not classes. Choose regression.",
            "bad_task",
        )
    _check_privacy(datasets, target_column, task, model, dp_epsilon)
    if curate and dp_epsilon is not None:
        raise refuse(
            "Curation chooses which rows to train on by looking at every row, which differential "
            "privacy's guarantee does not cover: choose one of curate and dp_epsilon.",
            "curate_with_dp",
        )
    if task == catalog.CLASSIFICATION:
        classes = _target_classes(datasets, target_column)
        if classes is not None:
            if len(classes) < 2:
                raise refuse(
                    f"The target {target_column!r} has a single class; a classifier needs two.",
                    "single_class",
                )
            rare = sorted(c for c, n in classes.items() if n < 2)
            if rare:
                raise refuse(
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
        dp_epsilon=dp_epsilon,
        curate=curate,
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


def _by_buyer(run: TrainingRun, event: ChainEvent) -> bool:
    """Whether `event` concerns the run's buyer's job: anyone can fund (and later refund) a job
    under a run's id, which is readable before payment, and that job is not the run's."""
    buyer = run.buyer.address
    return bool(buyer) and Web3.to_checksum_address(event.args["buyer"]) == (
        Web3.to_checksum_address(buyer)
    )


def training_run_funding_record(w3: Web3, event: ChainEvent) -> None:
    """Indexer handler for JobFunded (and the client's funding hint): queue the run once, for
    the run's buyer's payment only."""
    job_id = event.args["jobId"].removeprefix("0x")
    run = TrainingRun.objects.select_related("buyer").filter(job_id=job_id).first()
    if run is None:
        logger.info("JobFunded for job %s that is not ours", job_id)
        return
    if not _by_buyer(run, event):
        logger.warning(
            "JobFunded for run %s's job id by %s, not its buyer: ignored",
            run.pk,
            event.args["buyer"],
        )
        return
    inputs = list(run.inputs.order_by("position"))
    expected = [entry.listing_id for entry in inputs]
    updated = TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.AWAITING_PAYMENT
    ).update(
        status=TrainingRun.Status.FUNDED,
        funded_value_wei=event.args["value"],
        fee_wei=event.args["fee"],
        refund_after=event.args["refundAfter"],
        funding_tx=event.tx_hash,
        funding_block=event.block_number,
        funded_at=timezone.now(),
        stage=Stage.QUEUED,
    )
    if not updated:
        return  # seen before

    if event.args["datasetIds"] != expected:
        # The buyer funded this job for other datasets: give the money back, train nothing.
        training_run_fail(
            run_id=run.pk, reason="The payment named other datasets than this run, so nothing "
            "was trained.",
        )  # fmt: skip
        return
    for entry, owner in zip(inputs, event.args["owners"], strict=True):
        if entry.owner_address != owner:
            # The escrow pays the owner it committed at funding: the report names the same.
            TrainingRunDataset.objects.filter(pk=entry.pk).update(owner_address=owner)
    transaction.on_commit(lambda: training_run_enqueue(run.pk))


def training_run_enqueue(run_id: int) -> None:
    """Queue a run. The time limits travel with the message (the worker applies the sender's).
    A broker that does not answer loses nothing: the payment is recorded and the sweep of
    stalled runs queues the run once the broker is back."""
    from training.tasks import run_training

    try:
        run_training.apply_async(
            args=[run_id],
            queue=settings.CELERY_TRAINING_QUEUE,
            soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT_SECONDS,
            time_limit=settings.TRAINING_TIME_LIMIT_SECONDS,
        )
    except Exception as exc:
        if node_outage(exc) is None:
            raise
        logger.warning("run %s could not be queued (%s); the sweep will queue it", run_id, exc)


def training_runs_resume(*, stalled_for_seconds: int) -> list[int]:
    """Queue again the runs that were paid but never started, and the refunds still owed, e.g.
    after the broker lost a message or refused it. Both steps are safe to deliver twice."""
    since = timezone.now() - timedelta(seconds=stalled_for_seconds)
    funded = list(
        TrainingRun.objects.filter(status=Status.FUNDED, funded_at__lt=since).values_list(
            "pk", flat=True
        )
    )
    for run_id in funded:
        training_run_enqueue(run_id)
    refunding = list(
        TrainingRun.objects.filter(status=Status.REFUNDING, refund_queued_at__lt=since)
        .values_list("pk", flat=True)
    )  # fmt: skip
    for run_id in refunding:
        _queue_refund(run_id)
    # Runs waiting for attestations whose deadline passed: settled, or failed and refunded.
    overdue = list(
        TrainingRun.objects.filter(
            status=Status.SETTLING, attestation_round__deadline__lt=timezone.now()
        ).values_list("pk", flat=True)
    )
    for run_id in overdue:
        queue_settlement(run_id)
    return funded + refunding + overdue


def queue_settlement(run_id: int, *, countdown: float = 0) -> None:
    """Look at a run's settlement in the worker (after an answer, or at its deadline)."""
    from training.tasks import settle_training_run

    try:
        settle_training_run.apply_async(args=[run_id], countdown=countdown)
    except Exception as exc:
        if node_outage(exc) is None:
            raise
        logger.warning("the settlement of run %s could not be queued (%s)", run_id, exc)


def _queue_refund(run_id: int) -> None:
    """Queue the refund task; a broker that does not answer leaves it to the sweep."""
    from training.tasks import refund_training_run

    TrainingRun.objects.filter(pk=run_id).update(refund_queued_at=timezone.now())
    try:
        refund_training_run.delay(run_id)
    except Exception as exc:
        if node_outage(exc) is None:
            raise
        logger.warning("the refund of run %s could not be queued (%s)", run_id, exc)


def training_run_funding_hint(*, run: TrainingRun, tx_hash: str) -> TrainingRun:
    """The buyer's client says it paid in `tx_hash`: read that receipt now rather than wait for
    the indexer. Only a JobFunded event of this run's job, paid by its buyer, counts."""
    from chain.events import events_of_mined_transaction

    w3, events = events_of_mined_transaction(tx_hash)
    funded = [
        e for e in events
        if e.name == "JobFunded" and e.args["jobId"].removeprefix("0x") == run.job_id
        and _by_buyer(run, e)
    ]  # fmt: skip
    if not funded:
        raise refuse("That transaction did not fund this run.", "not_this_run")
    with transaction.atomic():
        training_run_funding_record(w3, funded[0])
    run.refresh_from_db()
    return run


# --- The run -------------------------------------------------------------------------------------

# (stage, label, where it starts in percent): what the run page lists.
STAGES = [(stage.value, stage.label, start) for stage, start in TrainingRun.STAGE_PROGRESS.items()]


def _stage(run_id: int, stage: str, progress: int | None = None) -> None:
    start = TrainingRun.STAGE_PROGRESS[stage]
    done = [s.value for s, p in TrainingRun.STAGE_PROGRESS.items() if p < start]
    TrainingRun.objects.filter(pk=run_id, status__in=[Status.RUNNING, Status.SETTLING]).update(
        stage=stage, progress=start if progress is None else progress, stages_done=done
    )


def training_run_execute(*, run_id: int, task_id: str = "") -> None:
    """funded -> running -> settling -> completed, resumable: a redelivered task continues from
    what the row records (the artifacts are recorded once per job, and the escrow settles a job
    once). A run taken by another task is left to it. Transient outages propagate (the task
    retries); `RunFailed` is permanent."""
    run = TrainingRun.objects.select_related("buyer").filter(pk=run_id).first()
    if run is None or run.status not in (Status.FUNDED, Status.RUNNING, Status.SETTLING):
        return
    TrainingRun.objects.filter(pk=run.pk, status=Status.FUNDED).update(
        status=Status.RUNNING, started_at=timezone.now(), claimed_by=task_id
    )
    run.refresh_from_db()
    if task_id and run.claimed_by and run.claimed_by != task_id:
        return  # a second message for the same run (the sweep queued it again)
    if run.status == Status.RUNNING and not run.report_hash:
        dp_seed = training_run_dp_seed(run_id=run.pk) if run.dp_epsilon is not None else None
        packaged = pipeline.train_and_package(
            run, dp_seed=dp_seed, on_stage=lambda stage, progress: _stage(run.pk, stage, progress),
            on_spec=lambda spec, keys: _attestation_open(run, spec, keys, dp_seed),
        )  # fmt: skip
        training_run_artifacts_record(run_id=run.pk, packaged=packaged)
    TrainingRun.objects.filter(pk=run.pk, status=Status.RUNNING).exclude(report_hash="").update(
        status=Status.SETTLING
    )
    training_run_settle(run_id=run.pk)


def _attestation_open(run: TrainingRun, spec, keys: dict[int, bytes], dp_seed) -> None:
    """Hand the run to its validators (once): they re-compute it while the worker trains. The
    settlement is looked at again when the attestations' deadline passes."""
    from validators.models import AttestationRound
    from validators.services import NotEnoughValidators, attestation_round_open

    if AttestationRound.objects.filter(run=run).exists():
        return
    try:
        attestation_round_open(run=run, spec=spec.as_dict(), data_keys=keys, dp_seed=dp_seed)
    except NotEnoughValidators as exc:
        raise RunFailed(str(exc)) from exc
    transaction.on_commit(
        lambda: queue_settlement(run.pk, countdown=settings.ATTESTATION_DEADLINE_CHECK_SECONDS)
    )


def training_run_settle(*, run_id: int) -> None:
    """settling -> completed once a quorum of validators attested the run's own report and
    payouts: the escrow checks their signatures. Until then the run waits (each answer and the
    deadline look again); a quorum that can no longer be reached is a `RunFailed`."""
    from validators.services import attestation_outlook, shortfall_reason

    run = TrainingRun.objects.select_related("buyer").filter(pk=run_id).first()
    if run is None or run.status != Status.SETTLING:
        return
    outlook, signatures = attestation_outlook(run)
    if outlook == "waiting":
        _stage(run.pk, Stage.ATTESTING)
        return
    if outlook == "short":
        if _follow_the_chain(run):
            return
        raise RunFailed(shortfall_reason(run))
    _stage(run.pk, Stage.SETTLING)
    try:
        outcome = pipeline.settle(run, signatures)
    except (ContractCustomError, ContractLogicError) as exc:
        # Refused before sending: the job may have been settled or refunded already.
        if not _follow_the_chain(run):
            name, _ = decode_revert(exc)
            raise RunFailed(f"The escrow refused the settlement ({name}).") from exc
        return
    if outcome.succeeded:
        with transaction.atomic():  # a completed run is never seen without its earnings
            training_run_settlement_record(
                run_id=run.pk, tx_hash=outcome.tx_hash, block_number=outcome.block_number
            )
            _record_earnings(outcome)
        return
    if not _follow_the_chain(run):
        raise RunFailed(f"The escrow refused the settlement (transaction {outcome.tx_hash}).")


def training_run_dp_seed(*, run_id: int) -> bytes:
    """A DP run's secret noise seed: made once per run and kept wrapped under the master key
    before the run trains, so a redelivered task draws the same noise (and a validator can be
    handed the seed wrapped to its own key). It is never reported."""
    from marketplace.crypto import KEY_SIZE, unwrap_data_key, wrap_data_key

    run = TrainingRun.objects.only("job_id", "wrapped_dp_seed").get(pk=run_id)
    context = pipeline.dp_seed_context(run.job_id)
    if run.wrapped_dp_seed is None:
        wrapped = wrap_data_key(secrets.token_bytes(KEY_SIZE), settings.MASTER_KEY, context=context)
        # A delivery running alongside may have made one first: its seed is the run's.
        TrainingRun.objects.filter(pk=run_id, wrapped_dp_seed__isnull=True).update(
            wrapped_dp_seed=wrapped
        )
        run.refresh_from_db(fields=["wrapped_dp_seed"])
    return unwrap_data_key(run.wrapped_dp_seed, settings.MASTER_KEY, context=context)


@transaction.atomic
def training_run_artifacts_record(*, run_id: int, packaged: pipeline.Packaged) -> bool:
    """Record a run's model and report once per job: what a later delivery packaged is unpinned,
    so the stored artifacts always hash to what the settlement commits to."""
    moved = (
        TrainingRun.objects.filter(pk=run_id, status=Status.RUNNING, report_hash="")
        .update(
            model_cid=packaged.model_cid, model_sha256=packaged.model_sha256,
            wrapped_model_key=packaged.wrapped_key, report=packaged.report,
            report_hash=packaged.report_hash, spec=packaged.spec,
            metrics=packaged.report["metrics"], figures=packaged.report["figures"],
        )
    )  # fmt: skip
    if not moved:
        current = TrainingRun.objects.get(pk=run_id)
        keep = {current.model_cid}
        if current.report_hash:
            keep.add(raw_cid_for_sha256(current.report_hash[2:]))
        transaction.on_commit(lambda: pipeline.discard(packaged, keep=keep))
        return False
    for entry in packaged.report["datasets"]:
        TrainingRunDataset.objects.filter(run_id=run_id, listing_id=entry["listing_id"]).update(
            contribution=entry["contribution"], amount_wei=int(entry["amount_wei"]),
            excluded_rows=entry["excluded_rows"], uncredited_rows=entry["uncredited_rows"],
        )  # fmt: skip
    return True


def training_run_settlement_record(*, run_id: int, tx_hash: str, block_number: int) -> bool:
    """-> completed, from a mined settlement (ours, or one the indexer found). A settlement that
    was mined late wins over a failure recorded meanwhile: the chain paid the contributors. It
    finished when its block was made (the chain's time, so a rebuilt database says the same)."""
    from chain.client import get_web3

    finished_at = block_time(get_web3(), block_number)
    moved = (
        TrainingRun.objects.filter(pk=run_id)
        .filter(
            Q(status__in=[Status.RUNNING, Status.SETTLING, Status.REFUNDING])
            | Q(status=Status.FAILED, refund_tx="")
        )
        .exclude(report_hash="")
        .update(
            status=Status.COMPLETED, stage=Stage.DONE, progress=100, error="",
            stages_done=[s.value for s in TrainingRun.STAGE_PROGRESS], settlement_tx=tx_hash,
            settlement_block=block_number, finished_at=finished_at,
        )
    )  # fmt: skip
    return bool(moved)


def _record_earnings(outcome) -> None:
    from training.earnings import earning_record

    timestamps: dict[int, int] = {}
    for event in outcome.events:
        if event.name == "PayeeCredited":  # the contributors see it now, not at the next index
            earning_record(TrainingEscrow.deployed().w3, event, timestamps)


def _follow_the_chain(run: TrainingRun) -> bool:
    """If the escrow already settled or refunded the job, record that; True when it had."""
    escrow = TrainingEscrow.deployed()
    events = escrow.job_events(bytes.fromhex(run.job_id), buyer=run.buyer.address)
    for event in events:
        if event.name == "JobSettled":
            if not training_run_settlement_record(
                run_id=run.pk, tx_hash=event.tx_hash, block_number=event.block_number
            ):
                logger.warning("run %s: settled on-chain in %s", run.pk, event.tx_hash)
            for credited in events:
                if credited.name == "PayeeCredited":
                    from training.earnings import earning_record

                    earning_record(escrow.w3, credited)
            return True
        if event.name == "JobRefunded":
            training_run_refund_record(run_id=run.pk, tx_hash=event.tx_hash)
            return True
    return False


# --- Failure and refund ---------------------------------------------------------------------------


class RefundNotMined(Exception):
    """The refund transaction reverted while the escrow still holds the payment: try again."""


def training_run_fail(*, run_id: int, reason: str) -> bool:
    """A permanent failure: -> refunding with the reason the buyer reads; the refund task gives
    the money back (and first follows a settlement that may still be mined)."""
    moved = TrainingRun.objects.filter(
        pk=run_id, status__in=[Status.FUNDED, Status.RUNNING, Status.SETTLING]
    ).update(status=Status.REFUNDING, stage=Stage.REFUNDING, error=reason)
    if moved:
        transaction.on_commit(lambda: _queue_refund(run_id))
    return bool(moved)


def training_run_refund(*, run_id: int) -> None:
    """refunding -> failed once the escrow gave the buyer their money back (or -> completed,
    when a settlement sent before the failure was mined after all). Transient outages and a
    pending transaction propagate: the task retries, following the same transactions."""
    run = TrainingRun.objects.select_related("buyer").filter(pk=run_id).first()
    if run is None or run.status != Status.REFUNDING:
        return
    if _follow_the_chain(run):
        return
    if run.report_hash and _settlement_sent(run):
        # A settlement was sent before the failure: it may still be mined, so follow it first.
        from validators.services import attestation_outlook

        outcome = pipeline.settle(run, attestation_outlook(run)[1])
        if outcome.succeeded:
            training_run_settlement_record(
                run_id=run.pk, tx_hash=outcome.tx_hash, block_number=outcome.block_number
            )
            _record_earnings(outcome)
            return
    outcome = pipeline.refund(run)
    if outcome.succeeded:
        training_run_refund_record(run_id=run.pk, tx_hash=outcome.tx_hash)
        return
    if not _follow_the_chain(run):
        raise RefundNotMined(f"the refund transaction {outcome.tx_hash} was reverted")


def _settlement_sent(run: TrainingRun) -> bool:
    from chain.models import ChainTransaction

    return (
        ChainTransaction.objects.filter(
            chain_id=settings.CHAIN_ID, intent=settle_intent(bytes.fromhex(run.job_id))
        )
        .exclude(status=ChainTransaction.Status.REVERTED)
        .exists()
    )


def training_run_refund_record(*, run_id: int, tx_hash: str) -> bool:
    """-> failed, from a mined refund: the reason says what failed and where the money went."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.status in (Status.COMPLETED, Status.FAILED):
        return False
    reason = run.error or "The run was stopped."
    moved = TrainingRun.objects.filter(pk=run_id, status=run.status).update(
        status=Status.FAILED, stage=Stage.DONE, refund_tx=tx_hash, finished_at=timezone.now(),
        error=f"{reason} Your payment was refunded to your wallet (transaction {tx_hash}).",
    )  # fmt: skip
    return bool(moved)


def training_run_settled_event_record(w3: Web3, event: ChainEvent) -> None:
    """Indexer handler for JobSettled: a settlement the worker did not see mined is recorded."""
    job_id = event.args["jobId"].removeprefix("0x")
    run = TrainingRun.objects.select_related("buyer").filter(job_id=job_id).first()
    if run is None or run.status == Status.COMPLETED or not _by_buyer(run, event):
        return
    if run.report_hash.lower() != str(event.args["reportHash"]).lower():
        logger.warning("JobSettled for run %s names another report", run.pk)
        return
    training_run_settlement_record(
        run_id=run.pk, tx_hash=event.tx_hash, block_number=event.block_number
    )


def training_run_refunded_event_record(w3: Web3, event: ChainEvent) -> None:
    """Indexer handler for JobRefunded (ours, or the buyer's own after the refund delay; a
    stranger's refund of its own job under the run's id is not the run's)."""
    job_id = event.args["jobId"].removeprefix("0x")
    run = TrainingRun.objects.select_related("buyer").filter(job_id=job_id).first()
    if run is None or run.status in (Status.COMPLETED, Status.FAILED) or not _by_buyer(run, event):
        return
    if not run.error:
        TrainingRun.objects.filter(pk=run.pk, error="").update(
            error="The payment was reclaimed from the escrow before the run settled."
        )
    training_run_refund_record(run_id=run.pk, tx_hash=event.tx_hash)


def report_json(run: TrainingRun) -> bytes:
    """The report exactly as pinned: its sha-256 is the report hash of the settlement."""
    from training import artifacts

    return artifacts.canonical_json(run.report)
