"""Infrastructure trouble: an IPFS outage is retried (the dataset waits), a step that gives up
moves the dataset to `failed` with a message, and nothing it pinned stays pinned."""

from pathlib import Path

import pytest
from django.test import override_settings

from datasets import services
from datasets.models import Dataset
from datasets.tasks import process_dataset
from marketplace.devstack import free_port
from marketplace.ipfs import IpfsUnavailable, pin_file
from tests.datasets.conftest import upload_files
from tests.datasets.factories import listing_fields, measurements_csv

pytestmark = pytest.mark.django_db


def new_dataset(owner, tmp_path, seed: int) -> Dataset:
    source = tmp_path / "upload.csv"
    source.write_bytes(measurements_csv(seed=seed))
    fields = listing_fields()
    return services.dataset_create(
        owner=owner,
        upload=source,
        original_filename="upload.csv",
        title=fields["title"],
        license=fields["license"],
        price_wei=fields["price_wei"],
        enqueue=False,
    )


def test_an_ipfs_outage_is_transient_and_leaves_the_dataset_waiting(owner, tmp_path, pins):
    dataset = new_dataset(owner, tmp_path, seed=51)
    pinned_before = pins()

    with override_settings(IPFS_API_URL=f"http://127.0.0.1:{free_port()}"):
        with pytest.raises(IpfsUnavailable):
            services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.PROCESSING  # the task retries it with backoff
    assert dataset.stage == Dataset.Stage.PINNING
    assert Path(dataset.upload_path).exists()
    assert pins() == pinned_before

    services.dataset_process(dataset_id=dataset.pk)  # the node is back

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert pins() == pinned_before | {dataset.cid, dataset.metadata_cid}


def test_a_rerun_after_an_interruption_unpins_what_the_first_run_pinned(owner, tmp_path, pins):
    dataset = new_dataset(owner, tmp_path, seed=52)
    pinned_before = pins()
    leftover = tmp_path / "leftover.bin"
    leftover.write_bytes(b"ciphertext of an interrupted attempt")
    interrupted_cid = pin_file(leftover)
    Dataset.objects.filter(pk=dataset.pk).update(cid=interrupted_cid)

    services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert dataset.cid != interrupted_cid
    assert pins() == pinned_before | {dataset.cid, dataset.metadata_cid}


def test_a_pin_the_dying_attempt_noted_but_never_recorded_is_unpinned_by_the_retry(
    owner, tmp_path, pins
):
    dataset = new_dataset(owner, tmp_path, seed=55)
    pinned_before = pins()
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(b"ciphertext pinned just before the worker was killed")
    orphan_cid = pin_file(orphan)
    Path(dataset.upload_path + ".cid").write_text(orphan_cid)  # the sealing thread's note

    services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert orphan_cid not in pins()
    assert pins() == pinned_before | {dataset.cid, dataset.metadata_cid}


def test_a_step_that_gives_up_fails_the_dataset_and_unpins_it(owner, tmp_path, pins):
    dataset = new_dataset(owner, tmp_path, seed=53)
    pinned_before = pins()
    partial = tmp_path / "partial.bin"
    partial.write_bytes(b"ciphertext pinned before the outage")
    Dataset.objects.filter(pk=dataset.pk).update(cid=pin_file(partial))

    process_dataset.on_failure(
        IpfsUnavailable("the IPFS node did not answer"), "task-id", (dataset.pk,), {}, None
    )

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.FAILED
    assert dataset.status_message == (
        "The IPFS node stayed unavailable; nothing was left pinned. Upload again later."
    )
    assert dataset.cid == ""
    assert pins() == pinned_before
    assert not [name for name in upload_files() if name.startswith(f"dataset-{dataset.pk}-")]


def test_a_missing_upload_fails_with_a_message(owner, tmp_path):
    dataset = new_dataset(owner, tmp_path, seed=54)
    Path(dataset.upload_path).unlink()

    services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.FAILED
    assert (
        dataset.status_message == "The uploaded file is no longer on the server: upload it again."
    )
