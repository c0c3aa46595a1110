"""Infrastructure trouble: an IPFS outage is retried (the dataset waits), a step that gives up
moves the dataset to `failed` with a message, and nothing it pinned stays pinned."""

import hashlib

import pytest
from django.test import override_settings

from datasets import processing, services
from datasets.models import Dataset
from datasets.tasks import process_dataset
from marketplace.devstack import free_port
from marketplace.ipfs import IpfsUnavailable, pin_file, raw_cid_for_sha256, unpin
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
    assert dataset.upload_cid in pinned_before  # staged for whichever worker takes it

    with override_settings(IPFS_API_URL=f"http://127.0.0.1:{free_port()}"):
        with pytest.raises(IpfsUnavailable):
            services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.PROCESSING  # the task retries it with backoff
    assert dataset.upload_cid and pins() == pinned_before

    services.dataset_process(dataset_id=dataset.pk)  # the node is back

    staged = dataset.upload_cid
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert dataset.upload_cid == ""
    assert pins() == pinned_before - {staged} | {dataset.cid, dataset.metadata_cid}


def test_an_outage_while_pinning_leaves_nothing_pinned_but_the_staged_upload(
    owner, tmp_path, pins, monkeypatch
):
    dataset = new_dataset(owner, tmp_path, seed=56)
    pinned_before = pins()

    def node_gone(cid):
        raise IpfsUnavailable("the IPFS node did not answer")

    monkeypatch.setattr(processing, "pin_cid", node_gone)
    with pytest.raises(IpfsUnavailable):
        services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.PROCESSING
    assert dataset.stage == Dataset.Stage.VERIFYING  # the ciphertext was added and read back
    assert dataset.cid == ""
    assert pins() == pinned_before  # what the attempt added was never pinned


def test_a_rerun_after_an_interruption_unpins_what_the_first_run_pinned(owner, tmp_path, pins):
    dataset = new_dataset(owner, tmp_path, seed=52)
    pinned_before = pins()
    leftover = tmp_path / "leftover.bin"
    leftover.write_bytes(b"ciphertext of an interrupted attempt")
    interrupted_cid = pin_file(leftover)
    Dataset.objects.filter(pk=dataset.pk).update(cid=interrupted_cid)

    services.dataset_process(dataset_id=dataset.pk)

    staged = dataset.upload_cid
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert dataset.cid != interrupted_cid
    assert pins() == pinned_before - {staged} | {dataset.cid, dataset.metadata_cid}


def test_a_worker_killed_after_adding_the_ciphertext_leaves_no_pin(
    owner, tmp_path, pins, monkeypatch
):
    dataset = new_dataset(owner, tmp_path, seed=55)
    pinned_before = pins()

    class WorkerKilled(BaseException):
        pass

    def killed(cid):
        raise WorkerKilled  # between adding the ciphertext and recording it

    monkeypatch.setattr(processing, "pin_cid", killed)
    with pytest.raises(WorkerKilled):
        services.dataset_process(dataset_id=dataset.pk)
    assert pins() == pinned_before

    monkeypatch.undo()
    services.dataset_process(dataset_id=dataset.pk)  # the broker redelivers it

    staged = dataset.upload_cid
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert pins() == pinned_before - {staged} | {dataset.cid, dataset.metadata_cid}


def test_a_step_that_gives_up_fails_the_dataset_and_unpins_it(owner, tmp_path, pins):
    dataset = new_dataset(owner, tmp_path, seed=53)
    pinned_before, staged = pins(), dataset.upload_cid
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
    assert dataset.cid == "" and dataset.upload_cid == ""
    assert pins() == pinned_before - {staged}  # neither the listing's pins nor the upload


def test_a_staged_upload_the_node_lost_fails_with_a_message(owner, tmp_path, pins):
    dataset = new_dataset(owner, tmp_path, seed=54)
    pinned_before, staged = pins(), dataset.upload_cid
    unpin(staged)  # e.g. a node restored from an older backup
    never_added = raw_cid_for_sha256(hashlib.sha256(b"bytes this node never held").hexdigest())
    Dataset.objects.filter(pk=dataset.pk).update(upload_cid=never_added)

    services.dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.FAILED
    assert (
        dataset.status_message == "The uploaded file is no longer on the server: upload it again."
    )
    assert dataset.upload_cid == "" and dataset.cid == ""
    assert pins() == pinned_before - {staged}
