"""A file whose processing kills the worker (as the out-of-memory killer would) is redelivered
once, then rejected with a reason, never requeued again."""

import os
import signal
import time

import pytest

from datasets import services
from datasets.models import Dataset
from marketplace.celery import app
from tests.datasets.conftest import post_dataset, upload_files, wait_for_status
from tests.datasets.factories import listing_fields, measurements_csv

pytestmark = pytest.mark.django_db(transaction=True)


def active_pids(dataset_id: int) -> set[int]:
    """The worker processes now running the processing step of this dataset."""
    hostname = f"test-worker-{os.getpid()}@localhost"
    answers = app.control.inspect(destination=[hostname], timeout=1.0).active() or {}
    return {
        task["worker_pid"]
        for tasks in answers.values()
        for task in tasks
        if task["name"] == "datasets.process" and list(task["args"]) == [dataset_id]
    }


def kill_the_worker_processing(dataset_id: int, delivery: int, timeout: float = 60) -> int:
    """SIGKILL the worker process running the `delivery`-th delivery of the processing step,
    once that delivery has recorded its start, as the out-of-memory killer would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(pk=dataset_id)
        assert dataset.status == Dataset.Status.PROCESSING, dataset.status_message
        running = active_pids(dataset_id)
        if running and dataset.interrupted_attempts == delivery:
            (pid,) = running
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery} of dataset {dataset_id} did not start")


def test_a_file_that_kills_the_worker_twice_is_rejected_and_not_requeued(
    api, contracts, celery_worker, pins
):
    header, body = measurements_csv(seed=61, rows=50_000).split(b"\n", 1)
    content = header + b"\n" + body * 20  # 1,000,000 rows: long enough to be caught at work
    pinned_before, files_before = pins(), upload_files()
    dataset_id = post_dataset(api, content).json()["id"]

    for delivery in (1, 2):  # the first delivery and its one retry
        kill_the_worker_processing(dataset_id, delivery)

    dataset = wait_for_status(
        dataset_id, Dataset.Status.REJECTED, Dataset.Status.AWAITING_SIGNATURE
    )
    assert dataset.status == Dataset.Status.REJECTED
    assert "stopped the worker" in dataset.status_message
    assert pins() == pinned_before
    assert upload_files() == files_before
    time.sleep(1)
    assert not active_pids(dataset_id)  # not delivered again


def test_a_delivery_after_two_interrupted_ones_rejects_the_file(owner, tmp_path):
    source = tmp_path / "upload.csv"
    source.write_bytes(measurements_csv(seed=62))
    fields = listing_fields()
    dataset = services.dataset_create(
        owner=owner, upload=source, original_filename="upload.csv", title=fields["title"],
        license=fields["license"], price_wei=fields["price_wei"], enqueue=False,
    )  # fmt: skip
    Dataset.objects.filter(pk=dataset.pk).update(interrupted_attempts=2)

    services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.REJECTED
    assert "stopped the worker" in dataset.status_message
    assert dataset.upload_cid == ""
