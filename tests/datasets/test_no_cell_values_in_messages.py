"""Warnings and refusals name a column, a row or a count, never a cell's value: a value of a
withheld column must not come back through a message."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from datasets.models import Dataset
from datasets.profiling import InputRejected, Limits, check_file, describe_file
from datasets.reader import widened
from marketplace.ipfs import iter_cat
from tests.datasets.conftest import post_dataset, wait_for_status
from tests.datasets.test_listing_pipeline import listed

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "secret-4711"


def everything_shown(api, dataset: Dataset) -> list[str]:
    """Every answer and page about the dataset, for its owner and for anyone."""
    anonymous, browser, stranger = APIClient(), Client(), Client()
    browser.force_login(dataset.owner)
    shown = [
        dataset.status_message,
        str(dataset.quality_warnings),
        api.get(f"/api/datasets/{dataset.pk}").content.decode(),
        api.get("/api/datasets/mine").content.decode(),
        anonymous.get(f"/api/datasets/{dataset.pk}").content.decode(),
        browser.get(f"/datasets/{dataset.pk}/").content.decode(),
        browser.get("/datasets/mine/").content.decode(),
        stranger.get(f"/datasets/{dataset.pk}/").content.decode(),
    ]
    if dataset.metadata_cid:
        shown.append(b"".join(iter_cat(dataset.metadata_cid)).decode())
    return shown


def test_values_of_withheld_columns_appear_in_no_warning_answer_or_page(
    api, contracts, celery_worker
):
    rows = [
        f'{i % 5},"=HYPERLINK(""{SECRET}-{i}"")",{SECRET}@example.org,{i % 3}' for i in range(40)
    ]
    content = ("bucket,phone,email,label\n" + "\n".join(rows) + "\n").encode()

    dataset = listed(api, content)

    codes = {(w["code"], w.get("column")) for w in dataset.quality_warnings}
    assert {("formula_cells", "phone"), ("constant_column", "email")} <= codes
    assert {("personal_data", "phone"), ("personal_data", "email")} <= codes
    formula = next(w for w in dataset.quality_warnings if w["code"] == "formula_cells")
    assert "40 cell(s)" in formula["message"]
    for text in everything_shown(api, dataset):
        assert SECRET not in text


def test_a_ragged_line_is_named_by_its_number_not_its_text(api, contracts, celery_worker):
    content = f"a,b,c\n1,2,3\n4,{SECRET}\n6,7,8\n".encode()

    dataset = wait_for_status(post_dataset(api, content).json()["id"], Dataset.Status.REJECTED)

    assert dataset.status_message.startswith("Line 3 has 2 fields where the header has 3.")
    for text in everything_shown(api, dataset):
        assert SECRET not in text


def test_the_last_line_of_a_truncated_file_is_named_by_its_number(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(f"a,b,c\n1,2,3\n4,{SECRET}".encode())
    limits = Limits(
        max_columns=1000, max_line_bytes=1024 * 1024, max_decoded_bytes=2**32, max_decode_ratio=200
    )

    with pytest.raises(InputRejected) as raised:
        describe_file(check_file(path, limits=limits), limits=limits)

    assert raised.value.message.startswith("The last line (line 3) has 2 fields")
    assert SECRET not in raised.value.message


def test_a_conversion_error_the_reader_cannot_place_quotes_no_value():
    import pyarrow as pa

    schema = pa.schema([("a", pa.int64())])
    with pytest.raises(InputRejected) as raised:
        widened(f"CSV parse error: Expected 3 columns, got 2: 4,{SECRET}", schema)

    assert SECRET not in raised.value.message
