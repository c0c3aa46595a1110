"""The listing pipeline's Celery tasks: thin wrappers that take a dataset id and call a service.
Transient outages (IPFS, the chain node) retry with backoff; when the retries run out, or on any
other error, the dataset moves to `failed` with a message and nothing of it stays pinned."""

from __future__ import annotations

import logging

import requests
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from chain.client import ChainUnavailable
from chain.sender import TransactionPending
from datasets import services
from marketplace.ipfs import IpfsUnavailable

logger = logging.getLogger(__name__)

IPFS_OUTAGES = (IpfsUnavailable,)
CHAIN_OUTAGES = (ChainUnavailable, requests.exceptions.RequestException, TransactionPending)


class DatasetStep(Task):
    """Moves the dataset to `failed` when the step gives up."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        dataset_id = args[0] if args else kwargs.get("dataset_id")
        if isinstance(exc, SoftTimeLimitExceeded):
            reason = (
                f"This step took longer than its limit ({self.soft_time_limit} s) and was "
                "stopped. Try a smaller file, or contact the operator."
            )
        elif isinstance(exc, IPFS_OUTAGES):
            reason = (
                "The IPFS node stayed unavailable; nothing was left pinned. Upload again later."
            )
        elif isinstance(exc, CHAIN_OUTAGES):
            reason = "The chain node stayed unavailable while registering. Try again later."
        else:
            reason = f"An unexpected error stopped the pipeline ({type(exc).__name__})."
        logger.error("dataset %s: %s failed: %r", dataset_id, self.name, exc)
        services.dataset_fail(dataset_id=dataset_id, reason=reason)


# Both steps are idempotent, so they are acknowledged late and redelivered if a worker dies:
# processing starts over and first unpins what an interrupted attempt pinned; registering sends
# an intent once, and its status move is guarded.
STEP_OPTIONS = {
    "base": DatasetStep, "ignore_result": True, "retry_backoff": 2, "retry_backoff_max": 120,
    "retry_jitter": True, "acks_late": True, "reject_on_worker_lost": True,
}  # fmt: skip


@shared_task(
    **STEP_OPTIONS,
    name="datasets.process",
    autoretry_for=IPFS_OUTAGES,
    max_retries=6,
    soft_time_limit=settings.DATASET_PROCESS_SOFT_TIME_LIMIT,
    time_limit=settings.DATASET_PROCESS_TIME_LIMIT,
)
def process_dataset(dataset_id: int) -> None:
    services.dataset_process(dataset_id=dataset_id)


@shared_task(
    **STEP_OPTIONS,
    name="datasets.register",
    autoretry_for=CHAIN_OUTAGES,
    max_retries=8,
    soft_time_limit=settings.DATASET_REGISTER_SOFT_TIME_LIMIT,
    time_limit=settings.DATASET_REGISTER_TIME_LIMIT,
)
def register_dataset(dataset_id: int) -> None:
    services.dataset_register(dataset_id=dataset_id)
