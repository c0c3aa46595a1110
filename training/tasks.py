"""Celery tasks of training runs: thin wrappers that take ids and call services."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from chain.client import ChainUnavailable
from marketplace.ipfs import IpfsUnavailable
from training.services import RunFailed, training_run_execute, training_run_fail_and_refund

logger = logging.getLogger(__name__)

TRANSIENT = (IpfsUnavailable, ChainUnavailable, ConnectionError, TimeoutError)


@shared_task(
    bind=True,
    name="training.run",
    ignore_result=True,
    # Safe to redeliver after a worker dies: every step is keyed on the run's state, and the
    # escrow settles a job once.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    # Defaults; training_run_enqueue sends the limits of the settings with each run.
    soft_time_limit=settings.TRAINING_SOFT_TIME_LIMIT_SECONDS,
    time_limit=settings.TRAINING_SOFT_TIME_LIMIT_SECONDS + 60,
)
def run_training(self, run_id: int) -> None:
    try:
        training_run_execute(run_id)
    except RunFailed as exc:
        training_run_fail_and_refund(run_id, str(exc))
    except SoftTimeLimitExceeded:
        fail_and_refund.delay(
            run_id, "The run did not finish within its time limit; it was refunded."
        )
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            fail_and_refund.delay(
                run_id, f"A node stayed unreachable ({exc}); the run was refunded."
            )
            return
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
    except Exception:
        logger.exception("training run %s stopped by an unexpected error", run_id)
        fail_and_refund.delay(run_id, "An internal error stopped the run; it was refunded.")


@shared_task(
    bind=True,
    name="training.fail_and_refund",
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
    soft_time_limit=120,
    time_limit=180,
)
def fail_and_refund(self, run_id: int, reason: str) -> None:
    training_run_fail_and_refund(run_id, reason)
