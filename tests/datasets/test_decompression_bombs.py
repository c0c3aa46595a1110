"""Parquet files that expand far beyond their size when decoded are refused before they are
decoded, with a reason naming the bound, and nothing of them is left behind."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings

from datasets.models import Dataset
from datasets.profiling import InputRejected, Limits, check_file, describe_file
from tests.datasets.conftest import post_dataset, upload_files, wait_for_status

pytestmark = pytest.mark.django_db(transaction=True)


def parquet_bytes(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=False, **options)
    return buffer.getvalue()


def dictionary_bomb(rows: int = 2000, length: int = 100_000) -> bytes:
    """One long string, stored once in the dictionary page, referenced by every row: a few
    hundred bytes on disk, rows x length bytes decoded."""
    column = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, dtype=np.int32)), pa.array(["x" * length])
    )
    return parquet_bytes(pa.table({"note": column}))


def limits(**overrides) -> Limits:
    values = {
        "max_columns": 1000,
        "max_line_bytes": 1024 * 1024,
        "max_decoded_bytes": settings.DATASET_MAX_DECODED_BYTES,
        "max_decode_ratio": settings.DATASET_MAX_DECODE_RATIO,
    }
    return Limits(**{**values, **overrides})


def described(tmp_path, content: bytes, bounds: Limits):
    path = tmp_path / "data.parquet"
    path.write_bytes(content)
    return describe_file(check_file(path, limits=bounds), limits=bounds)


def test_a_dictionary_bomb_is_rejected_naming_the_bound_and_nothing_is_left_behind(
    api, contracts, celery_worker, pins
):
    content = dictionary_bomb()  # ~0.5 KB on disk, 200 MB of text decoded
    assert len(content) < 2000
    pinned_before, files_before = pins(), upload_files()

    created = post_dataset(api, content, name="notes.parquet")

    assert created.status_code == 201
    dataset = wait_for_status(
        created.json()["id"], Dataset.Status.REJECTED, Dataset.Status.AWAITING_SIGNATURE
    )
    assert dataset.status == Dataset.Status.REJECTED
    assert "200 times its size" in dataset.status_message
    assert "xxxx" not in dataset.status_message
    assert pins() == pinned_before
    assert upload_files() == files_before
    assert dataset.cid == "" and dataset.wrapped_data_key is None


def test_a_run_of_one_repeated_number_is_rejected_from_the_metadata_before_decoding(tmp_path):
    # 1,000,000 zeros: a few KB of run-length encoding, 8 MB decoded.
    content = parquet_bytes(pa.table({"n": pa.array(np.zeros(1_000_000, dtype=np.int64))}))
    path = tmp_path / "zeros.parquet"
    path.write_bytes(content)

    with pytest.raises(InputRejected) as raised:
        check_file(path, limits=limits(max_decoded_bytes=1024 * 1024))  # the cheap first pass

    assert raised.value.code == "decoded_too_large"
    assert "at most 1 MiB" in raised.value.message


def test_the_absolute_bound_stops_a_dictionary_column_as_it_is_read(tmp_path):
    bomb = dictionary_bomb(rows=200, length=10_000)  # 2 MB decoded

    with pytest.raises(InputRejected) as raised:
        described(tmp_path, bomb, limits(max_decoded_bytes=1024 * 1024))

    assert raised.value.code == "decoded_too_large"
    assert "at most 1 MiB" in raised.value.message


def test_ordinary_parquet_files_are_far_from_the_bounds(tmp_path):
    rng = np.random.default_rng(7)
    rows = 200_000
    table = pa.table(
        {
            "x": rng.normal(size=rows),
            "kind": pa.array(rng.choice(["alpha", "beta", "gamma"], size=rows)),
            "flag": rng.integers(0, 2, size=rows).astype(bool),
            "constant": np.ones(rows, dtype=np.int64),
        }
    )

    result = described(tmp_path, parquet_bytes(table), limits())

    assert result.rows == rows
