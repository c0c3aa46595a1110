"""An upload rests encrypted from its first byte: while it waits for a worker, what the web
process staged on the IPFS node is not the plain file and holds none of its cells, and nothing
of it stays in the web process's upload folder."""

import pytest
from django.conf import settings

from datasets.models import Dataset
from marketplace.ipfs import iter_cat, pinned_cids, unpin
from tests.datasets.conftest import post_dataset, upload_files, wait_for_status

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "distinctive-cell-7f3a9c"


def content() -> bytes:
    rows = [f"{i},{SECRET if i == 7 else f'value {i % 5}'},{i * 1.5}" for i in range(300)]
    return ("id,remark,amount\n" + "\n".join(rows) + "\n").encode()


def test_a_queued_upload_is_not_plain_text_on_the_node_or_on_disk(api, contracts):
    before = upload_files()
    response = post_dataset(api, content())  # no worker runs: the upload waits in the queue
    assert response.status_code in (201, 202), response.json()

    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.status == Dataset.Status.PROCESSING
    assert dataset.upload_cid in pinned_cids()
    staged = b"".join(iter_cat(dataset.upload_cid))
    assert staged != content()
    assert SECRET.encode() not in staged and b"id,remark,amount" not in staged
    for name in upload_files() - before:  # nothing of it rests in plain text on disk either
        assert SECRET.encode() not in (settings.DATASET_UPLOAD_DIR / name).read_bytes()
    unpin(dataset.upload_cid)  # no worker runs in this test to process (and then unpin) it


def test_a_sealed_upload_is_read_by_the_worker_as_the_plain_file(api, contracts, celery_worker):
    response = post_dataset(api, content())
    dataset = wait_for_status(response.json()["id"], Dataset.Status.AWAITING_SIGNATURE)

    assert dataset.rows == 300 and dataset.size_bytes == len(content())
    assert [c["name"] for c in dataset.columns] == ["id", "remark", "amount"]
