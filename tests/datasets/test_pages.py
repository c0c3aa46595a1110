"""The dataset pages, rendered by Django: browse, upload, my datasets, detail."""

import pytest
from django.test import override_settings

from datasets.models import Dataset
from marketplace.ipfs import unpin
from tests.datasets.factories import csv_upload, listed_dataset, measurements_csv, user_for

pytestmark = pytest.mark.django_db

COLUMNS = [
    {
        "name": "fare", "type": "float", "nulls": 2, "distinct": 950, "distinct_exact": True,
        "min": 2.5, "max": 80.0, "mean": 14.2, "std": 9.1,
        "histogram": {"edges": [2.5 + i * 6.458 for i in range(13)],
                      "counts": [5, 30, 60, 40, 20, 9, 4, 2, 1, 0, 0, 1]},
    },
    {
        "name": "payment", "type": "string", "nulls": 0, "distinct": 3, "distinct_exact": True,
        "top_values": [{"value": "card", "count": 700}, {"value": "cash", "count": 290},
                       {"value": "'=cmd|' /C calc'!A0", "count": 10}],
        "formula_cells": 10,
    },
]  # fmt: skip


def test_browse_shows_listings_with_search_filters_and_sort(client):
    listed_dataset(owner=user_for(1), title="Taxi trips", tags=["transport"], rows=1000)
    listed_dataset(owner=user_for(2), title="Wine chemistry", tags=["food"])

    page = client.get("/datasets/", {"search": "taxi"}).content.decode()

    assert "Taxi trips" in page and "Wine chemistry" not in page
    assert 'name="search"' in page and 'value="taxi"' in page
    assert 'name="license"' in page and 'name="ordering"' in page
    assert "1 dataset match" in page


def test_browse_empty_states(client):
    assert "No dataset is listed yet." in client.get("/datasets/").content.decode()
    listed_dataset(owner=user_for(1), title="Taxi trips")
    page = client.get("/datasets/", {"search": "nothing-like-this"}).content.decode()
    assert "No listed dataset matches these filters." in page


def test_browse_paginates(client):
    for i in range(25):
        listed_dataset(owner=user_for(1), title=f"Listing number {i}")

    first = client.get("/datasets/").content.decode()
    second = client.get("/datasets/", {"page": 2}).content.decode()

    assert "Page 1 of 2" in first and "Listing number 24" in first
    assert ">Listing number 0</a>" in second


def test_a_bad_filter_is_explained_on_the_page(client):
    page = client.get("/datasets/", {"min_rows": "lots"}).content.decode()
    assert "The min rows filter is not valid" in page


def test_the_detail_page_shows_schema_charts_and_provenance(client):
    dataset = listed_dataset(
        owner=user_for(1),
        title="Taxi trips",
        description="# Trips\n<script>alert('x')</script>",
        columns=COLUMNS,
        cid="bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        content_sha256="ab" * 32,
        listing_id=7,
        tx_hash="0x" + "cd" * 32,
        block_number=42,
    )

    page = client.get(f"/datasets/{dataset.pk}/").content.decode()

    assert "<h1>Trips</h1>" in page and "<script>alert" not in page
    assert page.count("<svg") == 2 and "<rect" in page
    assert "&#x27;=cmd|&#x27; /C calc&#x27;!A0" in page
    assert "10 formula-like cells, shown inert" in page
    assert dataset.cid in page and "ab" * 32 in page and "0x" + "cd" * 32 in page
    assert f"did:ethr:0x7a69:{dataset.owner.address}" in page
    assert 'id="verify"' in page
    assert "cdn" not in page.lower() and "https://" not in page


def test_an_unlisted_dataset_is_only_shown_to_its_owner(client):
    owner = user_for(1)
    dataset = listed_dataset(
        owner=owner,
        title="Still checking",
        status=Dataset.Status.PROCESSING,
        stage=Dataset.Stage.CHECKING,
        progress=40,
    )

    assert client.get(f"/datasets/{dataset.pk}/").status_code == 404
    client.force_login(owner)
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "Reading and checking the file" in page and 'value="40"' in page
    assert 'data-live="1"' in page


def test_a_rejected_dataset_shows_its_reason_to_the_owner(client):
    owner = user_for(1)
    dataset = listed_dataset(
        owner=owner,
        title="Broken upload",
        status=Dataset.Status.REJECTED,
        status_message="The file has a header but no rows.",
    )
    client.force_login(owner)

    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    mine = client.get("/datasets/mine/").content.decode()

    assert "Rejected:</strong> The file has a header but no rows." in page
    assert "Broken upload" in mine and "The file has a header but no rows." in mine


def test_uploading_needs_sign_in(client):
    response = client.get("/datasets/new/")

    assert response.status_code == 302
    assert response["Location"] == "/signin/?next=/datasets/new/"


def test_the_upload_form_creates_a_dataset_and_opens_it(client, ipfs_node):
    owner = user_for(1)
    client.force_login(owner)

    response = client.post(
        "/datasets/new/",
        {
            "file": csv_upload(measurements_csv(seed=41)),
            "title": "Flowers",
            "description": "",
            "license": "CC0-1.0",
            "price_eth": "0.000000000000001",
            "tags": "botany",
        },
    )

    dataset = Dataset.objects.get(owner=owner)
    assert response.status_code == 302
    assert dataset.price_wei == 1000
    assert response["Location"] == f"/datasets/{dataset.pk}/"
    assert dataset.status == Dataset.Status.PROCESSING
    unpin(dataset.upload_cid)  # no worker runs in this test


def test_the_upload_form_shows_errors_inline(client):
    client.force_login(user_for(1))

    response = client.post(
        "/datasets/new/",
        {
            "file": csv_upload(measurements_csv(seed=42)),
            "title": "Flowers",
            "license": "CC0-1.0",
            "price_eth": "-0.5",
        },
    )

    assert response.status_code == 400
    assert "The amount cannot be negative." in response.content.decode()
    assert not Dataset.objects.exists()


@override_settings(DATASET_MAX_UPLOAD_BYTES=100)
def test_the_upload_form_explains_the_size_limit(client):
    client.force_login(user_for(1))

    response = client.post(
        "/datasets/new/",
        {"file": csv_upload(measurements_csv(seed=43)), "title": "Big", "license": "CC0-1.0",
         "price_eth": "0.000000000000000001"},
    )  # fmt: skip

    assert response.status_code == 400
    assert "The file is larger than the upload limit of 100" in response.content.decode()
    assert not Dataset.objects.exists()
