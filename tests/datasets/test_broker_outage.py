"""With the task queue (Redis) down, a listing step answers 503 and leaves nothing behind: no
row stuck in `processing`, no upload on disk, no listing stuck in `registering`."""

import pytest
from eth_account import Account

from chain.wrappers import DatasetRegistry
from datasets.models import Dataset
from datasets.selectors import listing_terms
from datasets.services import dataset_create, dataset_process
from tests.datasets.conftest import post_dataset, upload_files
from tests.datasets.factories import DEV_KEYS, measurements_csv, user_for
from tests.marketplace.test_outages import closed_url, redis_down  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_upload_the_queue_cannot_take_leaves_no_row_and_no_file(api, redis_down):  # noqa: F811
    before = upload_files()

    response = post_dataset(api, measurements_csv(seed=71))

    assert response.status_code == 503
    assert response.json()["extra"] == {"code": "node_unavailable", "part": "redis"}
    assert not Dataset.objects.exists()
    assert upload_files() == before


@pytest.fixture
def awaiting_signature(contracts, ipfs_node, tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_bytes(measurements_csv(seed=72))
    dataset = dataset_create(
        owner=user_for(1), upload=path, original_filename=path.name, title="Flowers",
        license="CC0-1.0", price_wei=1, enqueue=False,
    )  # fmt: skip
    dataset_process(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    return dataset


def test_a_signature_the_queue_cannot_take_leaves_the_listing_waiting_for_it(
    api,
    awaiting_signature,
    redis_down,  # noqa: F811
):
    dataset = awaiting_signature
    typed = DatasetRegistry.deployed().listing_typed_data(listing_terms(dataset))
    signature = Account.sign_typed_data(DEV_KEYS[1], full_message=typed).signature

    response = api.post(
        f"/api/datasets/{dataset.pk}/signature", {"signature": "0x" + signature.hex()},
        format="json",
    )  # fmt: skip

    assert response.status_code == 503
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE
    assert dataset.signature == ""
