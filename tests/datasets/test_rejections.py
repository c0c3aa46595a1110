"""Files the worker rejects: status `rejected` with the reason, nothing pinned on the IPFS node,
no statistics, keys or hashes half-written, no file left on the server."""

import os

import pytest

from datasets.models import Dataset, MinHashBand
from tests.datasets.conftest import post_dataset, upload_files, wait_for_status
from tests.datasets.factories import measurements_csv

pytestmark = pytest.mark.django_db(transaction=True)


def wide_csv(columns: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    row = ",".join("1" for _ in range(columns))
    return f"{header}\n{row}\n{row}\n".encode()


BAD_FILES = [
    pytest.param(os.urandom(64 * 1024), "neither CSV text nor a Parquet file", id="random bytes"),
    pytest.param(b"sepal_length,species\n", "has a header but no rows", id="header only"),
    pytest.param(
        measurements_csv(seed=21, rows=50)[:-9],
        "The last line (line 51) has 4 fields where the header has 5",
        id="truncated last line",
    ),
    pytest.param(
        "city,population\nZürich,421878\nMünchen,1488202\n".encode("latin-1"),
        "is not UTF-8 text",
        id="non-UTF-8",
    ),
    pytest.param(
        b"note\n" + b"x" * (10 * 1024 * 1024) + b"\n",
        "A line of the file is longer than 1,048,576 bytes",
        id="10 MB single line",
    ),
    pytest.param(
        b"a,b,c\n1,2,3\n4,5\n6,7,8\n",
        "Line 3 has 2 fields where the header has 3",
        id="ragged rows",
    ),
    pytest.param(
        wide_csv(10_000), "The file has 10,000 columns; at most 1,000", id="10,000 columns"
    ),
]


@pytest.mark.parametrize("content, reason", BAD_FILES)
def test_a_bad_file_is_rejected_with_its_reason_and_nothing_left_behind(
    api, contracts, celery_worker, pins, content, reason
):
    pinned_before, files_before = pins(), upload_files()

    created = post_dataset(api, content)

    assert created.status_code == 201
    dataset = wait_for_status(created.json()["id"], Dataset.Status.REJECTED)
    assert reason in dataset.status_message
    detail = api.get(f"/api/datasets/{dataset.pk}").json()
    assert detail["status"] == "rejected" and reason in detail["status_message"]
    # Nothing pinned, nothing half-written, nothing on disk.
    assert pins() == pinned_before
    assert (dataset.cid, dataset.metadata_cid, dataset.content_sha256) == ("", "", "")
    assert dataset.wrapped_data_key is None and dataset.rows is None and dataset.columns == []
    assert not MinHashBand.objects.filter(dataset=dataset).exists()
    assert upload_files() == files_before
    # Not listed: strangers cannot see it.
    assert api.get("/api/datasets").json()["count"] == 0
