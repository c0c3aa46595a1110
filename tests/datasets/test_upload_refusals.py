"""Uploads the API refuses at once: a clear 4xx, no dataset row, no file left on the server."""

import pytest
from django.test import override_settings

from datasets.models import Dataset
from datasets.uploads import fetch_staged, plaintext
from marketplace.ipfs import unpin
from tests.datasets.conftest import post_dataset, upload_files
from tests.datasets.factories import listed_dataset, measurements_csv, user_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def nothing_left(db):
    """After the test: no dataset was created and no uploaded file stayed on disk."""
    files_before = upload_files()
    yield
    assert Dataset.objects.filter(status=Dataset.Status.PROCESSING).count() == 0
    assert upload_files() == files_before


def refused(response, status: int, words: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert words in body["message"], body
    return body


def test_uploading_while_signed_out_is_refused(anonymous_api, nothing_left):
    response = post_dataset(anonymous_api, measurements_csv(seed=11))

    refused(response, 401, "Authentication credentials were not provided")


def test_an_empty_file_is_refused(api, nothing_left):
    refused(post_dataset(api, b""), 400, "The file is empty.")


@override_settings(DATASET_MAX_UPLOAD_BYTES=1000)
def test_a_file_over_the_size_limit_is_refused_while_it_arrives(api, nothing_left):
    body = refused(
        post_dataset(api, measurements_csv(seed=12)), 413, "larger than the upload limit"
    )

    assert body["extra"]["limit_bytes"] == 1000


@pytest.mark.parametrize(
    "price, words",
    [
        ("0.5", "whole number of wei"),
        ("1e18", "whole number of wei"),
        ("ten", "whole number of wei"),
        ("-5", "cannot be negative"),
        (str(2**88), "above what the registry can hold"),
    ],
)
def test_a_price_that_is_not_a_whole_positive_number_of_wei_is_refused(
    api, nothing_left, price, words
):
    refused(post_dataset(api, measurements_csv(seed=13), price_wei=price), 400, words)


def test_an_unknown_license_is_refused(api, nothing_left):
    body = refused(
        post_dataset(api, measurements_csv(seed=14), license="WTFPL-9"), 400, "Unknown license"
    )
    assert "CC-BY-4.0" in body["message"]


def test_a_spreadsheet_file_is_refused_with_a_hint(api, nothing_left):
    refused(post_dataset(api, b"PK\x03\x04", name="sheet.xlsx"), 400, "Export spreadsheets as CSV")


def test_a_parent_owned_by_someone_else_is_refused(api, nothing_left):
    other = listed_dataset(owner=user_for(2), title="Someone else's data")

    body = refused(
        post_dataset(api, measurements_csv(seed=15), parent=other.pk),
        403,
        "belongs to another owner",
    )
    assert body["extra"]["code"] == "parent_not_owned"


def test_a_parent_that_does_not_exist_is_refused(api, nothing_left):
    refused(post_dataset(api, measurements_csv(seed=16), parent=999999), 404, "no dataset #999999")


def test_missing_fields_are_named(api, nothing_left):
    response = api.post("/api/datasets", {"title": "No file"}, format="multipart")

    body = refused(response, 400, "The request is not valid.")
    assert {"file", "license", "price_wei"} <= set(body["extra"]["fields"])


def test_an_accepted_upload_answers_201_processing(api, owner, ipfs_node, tmp_path):
    response = post_dataset(api, measurements_csv(seed=17), tags="Botany, tabular, botany")

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "processing"
    dataset = Dataset.objects.get(pk=body["id"])
    assert dataset.owner == owner
    assert dataset.tags == ["botany", "tabular"]
    assert str(dataset.price_wei) == "20000000000000000"
    staged = fetch_staged(dataset.upload_cid, tmp_path / "staged.csv")
    assert staged.read_bytes() != measurements_csv(seed=17)
    with plaintext(staged) as plain:  # staged encrypted; the worker reads the plain bytes
        assert plain.read_bytes() == measurements_csv(seed=17)
    unpin(dataset.upload_cid)  # no worker runs in this test to process (and then unpin) it
