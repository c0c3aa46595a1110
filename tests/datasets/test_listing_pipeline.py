"""A dataset from upload to `listed`, through the real worker, IPFS node and chain."""

import base64
import hashlib
import io
import json
import os

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from eth_account import Account

from chain.indexer import chain_index_catch_up
from chain.models import ChainTransaction
from chain.wrappers import DatasetRegistry
from datasets.models import Dataset
from marketplace.celery import app
from marketplace.crypto import iter_decrypt, unwrap_data_key
from marketplace.ipfs import iter_cat
from tests.datasets.conftest import post_dataset, upload_files, wait_for_status
from tests.datasets.factories import DEV_ADDRESSES, DEV_KEYS, STRANGER_KEY, measurements_csv

pytestmark = pytest.mark.django_db(transaction=True)


def sign(typed: dict, key: str) -> str:
    message = dict(typed["message"])
    for field in ("price", "parentId", "nonce", "deadline"):
        message[field] = int(message[field])
    signed = Account.sign_typed_data(key, full_message={**typed, "message": message})
    return signed.signature.to_0x_hex()


def awaiting_signature(api, content: bytes, **fields) -> tuple[Dataset, dict]:
    created = post_dataset(api, content, **fields)
    assert created.status_code == 201, created.json()
    dataset = wait_for_status(created.json()["id"], Dataset.Status.AWAITING_SIGNATURE)
    return dataset, api.get(f"/api/datasets/{dataset.pk}").json()["signing_request"]


def submit(api, dataset_id: int, signature: str):
    return api.post(
        f"/api/datasets/{dataset_id}/signature", {"signature": signature}, format="json"
    )


def listed(api, content: bytes, **fields) -> Dataset:
    dataset, typed = awaiting_signature(api, content, **fields)
    assert submit(api, dataset.pk, sign(typed, DEV_KEYS[1])).status_code == 202
    return wait_for_status(dataset.pk, Dataset.Status.LISTED)


def test_upload_sign_and_list_end_to_end(api, contracts, celery_worker, pins):
    content = measurements_csv(seed=1)
    pinned_before = pins()

    created = post_dataset(api, content, price_wei="20000000000000000")

    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "processing"
    dataset_id = created.json()["id"]
    dataset = wait_for_status(dataset_id, Dataset.Status.AWAITING_SIGNATURE)
    assert dataset.rows == 200
    assert [c["name"] for c in dataset.columns] == [
        "sepal_length", "sepal_width", "petal_length", "species", "label",
    ]  # fmt: skip

    # The pinned bytes are ciphertext whose hash is the recorded one, and which opens with the
    # wrapped data key (bound to that hash, not to a database id) to exactly the uploaded file.
    pinned = b"".join(iter_cat(dataset.cid))
    assert hashlib.sha256(pinned).hexdigest() == dataset.content_sha256
    assert b"sepal_length" not in pinned and b"setosa" not in pinned
    key = unwrap_data_key(
        bytes(dataset.wrapped_data_key),
        settings.MASTER_KEY,
        context=f"dataset-content:{dataset.content_sha256}".encode(),
    )
    assert b"".join(iter_decrypt(io.BytesIO(pinned), key)) == content
    metadata = b"".join(iter_cat(dataset.metadata_cid))
    assert hashlib.sha256(metadata).hexdigest() == dataset.metadata_sha256
    assert b"setosa" in metadata  # the public statistics, not the rows
    # The metadata publishes the wrapped key, so a database rebuilt from the chain has it too.
    published = json.loads(metadata)["content"]["key"]
    assert base64.b64decode(published["wrapped"]) == bytes(dataset.wrapped_data_key)
    assert pins() == pinned_before | {dataset.cid, dataset.metadata_cid}
    assert upload_files() == set()

    typed = api.get(f"/api/datasets/{dataset_id}").json()["signing_request"]
    assert typed["primaryType"] == "Listing"
    assert typed["domain"]["chainId"] == 31337
    assert typed["message"]["owner"] == DEV_ADDRESSES[1]
    assert typed["message"]["cid"] == dataset.cid
    assert typed["message"]["contentHash"] == "0x" + dataset.content_sha256
    assert typed["message"]["price"] == "20000000000000000"

    assert submit(api, dataset_id, sign(typed, DEV_KEYS[1])).status_code == 202

    dataset = wait_for_status(dataset_id, Dataset.Status.LISTED)
    registry = DatasetRegistry.deployed()
    listing = registry.listing(dataset.listing_id)
    assert (listing.owner, listing.price_wei, listing.delisted) == (
        DEV_ADDRESSES[1], 20000000000000000, False,
    )  # fmt: skip
    event = registry.listed_event(dataset.listing_id)
    assert (event.tx_hash, event.block_number) == (dataset.tx_hash, dataset.block_number)
    assert event.args["cid"] == dataset.cid

    verified = api.post(f"/api/datasets/{dataset_id}/verify").json()
    assert verified["ok"], verified
    assert [c["name"] for c in verified["checks"]] == [
        "ipfs_content", "chain_listing", "chain_event", "metadata",
    ]  # fmt: skip
    assert all(c["ok"] for c in verified["checks"])

    browse = api.get("/api/datasets", {"search": "sepal"}).json()
    assert [d["id"] for d in browse["results"]] == [dataset_id]

    chain_index_catch_up(w3=registry.w3)
    assert Dataset.objects.get(pk=dataset_id).confirmed_block == dataset.block_number


def test_a_signature_by_another_key_is_refused_and_nothing_is_sent(api, contracts, celery_worker):
    dataset, typed = awaiting_signature(api, measurements_csv(seed=2))
    count_before = DatasetRegistry.deployed().listing_count()

    response = submit(api, dataset.pk, sign(typed, STRANGER_KEY))

    assert response.status_code == 400
    stranger = Account.from_key(STRANGER_KEY).address
    assert response.json()["message"] == (
        f"The signature was made by {stranger}, not by the owner {DEV_ADDRESSES[1]}: sign with "
        "the owner's wallet. Nothing was sent to the chain."
    )
    assert Dataset.objects.get(pk=dataset.pk).status == Dataset.Status.AWAITING_SIGNATURE
    assert not ChainTransaction.objects.filter(intent__startswith="list:dataset:").exists()
    assert DatasetRegistry.deployed().listing_count() == count_before


def test_a_malformed_signature_is_refused(api, contracts, celery_worker):
    dataset, _ = awaiting_signature(api, measurements_csv(seed=3))

    response = submit(api, dataset.pk, "0x1234")

    assert response.status_code == 400
    assert "malformed" in response.json()["message"]


def test_signing_twice_is_refused_and_lists_once(api, contracts, celery_worker):
    dataset, typed = awaiting_signature(api, measurements_csv(seed=4))
    signature = sign(typed, DEV_KEYS[1])

    first, second = submit(api, dataset.pk, signature), submit(api, dataset.pk, signature)

    assert first.status_code == 202
    assert second.status_code == 409
    assert "already signed" in second.json()["message"]
    dataset = wait_for_status(dataset.pk, Dataset.Status.LISTED)
    third = submit(api, dataset.pk, signature)
    assert third.status_code == 409 and "already signed and listed" in third.json()["message"]
    assert ChainTransaction.objects.filter(intent=f"list:dataset:{dataset.pk}").count() == 1


def test_only_the_owner_sees_or_signs_an_unlisted_dataset(
    api, anonymous_api, contracts, celery_worker
):
    from rest_framework.test import APIClient

    from tests.datasets.factories import user_for

    dataset, typed = awaiting_signature(api, measurements_csv(seed=5))
    other = APIClient()
    other.force_authenticate(user_for(2))

    assert anonymous_api.get(f"/api/datasets/{dataset.pk}").status_code == 404
    assert other.get(f"/api/datasets/{dataset.pk}").status_code == 404
    assert submit(other, dataset.pk, sign(typed, DEV_KEYS[2])).status_code == 404
    assert Dataset.objects.get(pk=dataset.pk).status == Dataset.Status.AWAITING_SIGNATURE


def test_a_new_version_points_to_its_parent_on_chain(api, contracts, celery_worker):
    parent = listed(api, measurements_csv(seed=6), title="Flowers, first release")

    child = listed(api, measurements_csv(seed=7), title="Flowers, second release", parent=parent.pk)

    event = DatasetRegistry.deployed().listed_event(child.listing_id)
    assert event.args["parentId"] == parent.listing_id
    detail = api.get(f"/api/datasets/{parent.pk}").json()
    assert [v["id"] for v in detail["versions"]] == [child.pk]
    assert api.get(f"/api/datasets/{child.pk}").json()["parent"]["id"] == parent.pk


def test_verify_names_the_check_that_fails(api, anonymous_api, contracts, celery_worker):
    dataset = listed(api, measurements_csv(seed=8))
    Dataset.objects.filter(pk=dataset.pk).update(price_wei=1, content_sha256="00" * 32)

    result = anonymous_api.post(f"/api/datasets/{dataset.pk}/verify").json()

    outcome = {c["name"]: c["ok"] for c in result["checks"]}
    assert result["ok"] is False
    assert outcome == {
        "ipfs_content": False, "chain_listing": False, "chain_event": False, "metadata": True,
    }  # fmt: skip
    listing_check = next(c for c in result["checks"] if c["name"] == "chain_listing")
    assert "price is 20000000000000000 wei, not 1" in listing_check["detail"]


def test_verify_listings_command_reports_each_listing(api, contracts, celery_worker, capsys):
    good = listed(api, measurements_csv(seed=9), title="Good listing")
    bad = listed(api, measurements_csv(seed=10), title="Tampered listing")

    call_command("verify_listings")
    assert f"ok      #{good.pk} Good listing" in capsys.readouterr().out

    Dataset.objects.filter(pk=bad.pk).update(cid=good.cid)
    with pytest.raises(CommandError, match="1 of 2 listings do not verify"):
        call_command("verify_listings")
    output = capsys.readouterr().out
    assert f"FAILED  #{bad.pk} Tampered listing" in output
    assert "The bytes on IPFS match the recorded hash" in output


def test_the_worker_applies_the_time_limits_from_settings(celery_worker):
    worker = f"test-worker-{os.getpid()}@localhost"  # the celery_worker fixture's hostname
    registered = app.control.inspect([worker], timeout=5).registered(
        "soft_time_limit", "time_limit"
    )
    tasks = {line.split(" ")[0]: line for lines in registered.values() for line in lines}

    soft, hard = settings.DATASET_PROCESS_SOFT_TIME_LIMIT, settings.DATASET_PROCESS_TIME_LIMIT
    assert f"soft_time_limit={soft}" in tasks["datasets.process"]
    assert f"time_limit={hard}" in tasks["datasets.process"]
    assert "soft_time_limit=180" in tasks["datasets.register"]
