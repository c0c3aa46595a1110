"""Celery tasks of training runs: thin wrappers that take ids and call services."""

import logging

import requests
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from chain.client import ChainUnavailable
from chain.sender import TransactionPending, TransactionRejected
from marketplace.ipfs import IpfsUnavailable
from training.models import TrainingRun
from training.pipeline import RunFailed
from training.services import (
    RefundNotMined,
    training_run_execute,
    training_run_fail,
    training_run_refund,
    training_run_settle,
    training_runs_resume,
)

logger = logging.getLogger(__name__)

# Outages and a transaction not yet mined: the next attempt follows the same transactions.
TRANSIENT = (
    IpfsUnavailable, ChainUnavailable, TransactionPending,
    requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError,
)  # fmt: skip
PARTS = {IpfsUnavailable: "The IPFS node", ChainUnavailable: "The chain node"}


def _while(run_id: int) -> str:
    """What the run was doing, in the buyer's words ("while training the model")."""
    stage = TrainingRun.objects.filter(pk=run_id).values_list("stage", flat=True).first()
    label = TrainingRun.Stage(stage).label if stage in TrainingRun.Stage.values else ""
    return f" while {label[0].lower()}{label[1:]}" if label else ""


@shared_task(
    bind=True,
    name="training.run",
    ignore_result=True,
    # Safe to redeliver after a worker dies: every step is keyed on the run's state, the
    # artifacts are recorded once per job, and the escrow settles a job once.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    # Defaults; training_run_enqueue sends the limits of the settings with each run.
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT_SECONDS,
    time_limit=settings.TRAINING_TIME_LIMIT_SECONDS,
)
def run_training(self, run_id: int) -> None:
    try:
        training_run_execute(run_id=run_id, task_id=self.request.id or "")
    except RunFailed as exc:
        training_run_fail(run_id=run_id, reason=str(exc))
    except SoftTimeLimitExceeded:
        limit = self.request.timelimit[1] if self.request.timelimit else self.soft_time_limit
        training_run_fail(
            run_id=run_id,
            reason=f"The run did not finish within its time limit ({limit} s){_while(run_id)}.",
        )
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            part = next((p for cls, p in PARTS.items() if isinstance(exc, cls)), "A node")
            training_run_fail(
                run_id=run_id,
                reason=f"{part} stayed unreachable{_while(run_id)}, so the run was stopped.",
            )
            return
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
    except Exception as exc:
        logger.exception("training run %s stopped by an unexpected error", run_id)
        training_run_fail(
            run_id=run_id,
            reason=f"The run stopped on an unexpected error{_while(run_id)} "
            f"({type(exc).__name__}).",
        )


@shared_task(
    name="training.settle",
    ignore_result=True,
    # Safe to redeliver: the settlement is one transaction per job, followed to its receipt.
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=30,
    soft_time_limit=settings.TRAINING_SETTLEMENT_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_SETTLEMENT_TIME_LIMIT,
)
def settle_training_run(run_id: int) -> None:
    """Settle a run whose attestations came in (or whose deadline passed)."""
    try:
        training_run_settle(run_id=run_id)
    except RunFailed as exc:
        training_run_fail(run_id=run_id, reason=str(exc))


@shared_task(
    name="training.refund",
    ignore_result=True,
    # Safe to redeliver: the refund is one transaction per job, followed to its receipt.
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(*TRANSIENT, RefundNotMined, TransactionRejected),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=30,
    soft_time_limit=settings.TRAINING_SETTLEMENT_SOFT_TIME_LIMIT,
    time_limit=settings.TRAINING_SETTLEMENT_TIME_LIMIT,
)
def refund_training_run(run_id: int) -> None:
    training_run_refund(run_id=run_id)


@shared_task(name="training.resume_stalled", ignore_result=True, soft_time_limit=60, time_limit=90)
def resume_stalled_runs() -> None:
    training_runs_resume(stalled_for_seconds=settings.TRAINING_RESUME_AFTER_SECONDS)
