"""Every file the listing accepts trains: the training worker reads the decrypted bytes through
the listing's own reader, so it sees the rows, column names and types of the listing's profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets.models import Dataset
from datasets.profiling import _type_label
from datasets.reader import FileFormat
from datasets.selectors import dataset_rows
from datasets.services import dataset_create, dataset_process
from tests.datasets.factories import user_for
from tests.training.conftest import list_file, wait_for_run, wallet_pay
from training.models import TrainingRun

ROWS = 80


def frame(seed: int) -> pd.DataFrame:
    """Rows no other corpus file shares (an exact duplicate would be refused)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=ROWS)
    return pd.DataFrame(
        {
            "x": np.round(x, 4),
            "count": rng.integers(0, 50, size=ROWS),
            "colour": rng.choice(["red", "green", "blue"], size=ROWS),
            "target": (x + rng.normal(scale=0.5, size=ROWS) > 0).astype(int),
        }
    )


def delimited(data: pd.DataFrame, sep: str, *, crlf: bool = False, bom: bool = False) -> bytes:
    end = "\r\n" if crlf else "\n"
    lines = [sep.join(data.columns)]
    lines += [sep.join(str(v) for v in row) for row in data.itertuples(index=False)]
    text = end.join(lines) + end
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def quoted_with_separators_and_newlines(seed: int) -> bytes:
    data = frame(seed)
    lines = ["x;count;note;target"]
    for i, row in enumerate(data.itertuples(index=False)):
        note = f'"a; b, ""quoted""\nline {i}"' if i % 3 == 0 else f"plain {i % 4}"
        lines.append(f"{row.x};{row.count};{note};{row.target}")
    return ("\n".join(lines) + "\n").encode()


def mixed_types(seed: int) -> bytes:
    """Booleans, dates, an empty column and missing values in every kind of column."""
    data = frame(seed)
    lines = ["x,flag,day,empty,colour,target"]
    for i, row in enumerate(data.itertuples(index=False)):
        flag = "" if i % 7 == 0 else ("true" if i % 2 else "false")
        day = "" if i % 9 == 0 else f"2024-01-{1 + i % 28:02d}"
        colour = "" if i % 5 == 0 else row.colour
        lines.append(f"{row.x},{flag},{day},,{colour},{row.target}")
    return ("\n".join(lines) + "\n").encode()


def parquet_bytes(tmp_path, seed: int) -> bytes:
    data = frame(seed)
    counts = pa.array([None if i % 7 == 0 else int(v) for i, v in enumerate(data["count"])])
    table = pa.table(
        {
            "x": pa.array([None if i % 11 == 0 else float(v) for i, v in enumerate(data["x"])]),
            "count": counts,  # nullable integers
            "colour": pa.array(data["colour"]).dictionary_encode(),
            "target": pa.array(data["target"].astype("int64")),
        }
    )
    path = tmp_path / "corpus.parquet"
    pq.write_table(table, path, use_dictionary=True)
    return path.read_bytes()


CORPUS = {
    "comma.csv": lambda tmp, seed: delimited(frame(seed), ","),
    "semicolon.csv": lambda tmp, seed: delimited(frame(seed), ";"),
    "tab.tsv": lambda tmp, seed: delimited(frame(seed), "\t"),
    "pipe.txt": lambda tmp, seed: delimited(frame(seed), "|"),
    "quoted.csv": lambda tmp, seed: quoted_with_separators_and_newlines(seed),
    "bom-crlf.csv": lambda tmp, seed: delimited(frame(seed), ";", crlf=True, bom=True),
    "mixed-types.csv": lambda tmp, seed: mixed_types(seed),
    "dictionary-nullable.parquet": parquet_bytes,
}


def listed(tmp_path, name: str, seed: int) -> Dataset:
    path = tmp_path / name
    path.write_bytes(CORPUS[name](tmp_path, seed))
    return list_file(path, account=1 + seed % 3, title=f"Corpus {name}", price_wei=10**15)


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(CORPUS))
def test_training_reads_the_rows_names_and_types_of_the_listing(
    name, contracts, ipfs_node, tmp_path
):
    dataset = listed(tmp_path, name, seed=list(CORPUS).index(name))

    table = dataset_rows(dataset=dataset, workdir=tmp_path, expected_sha256=dataset.content_sha256)

    assert table.num_rows == dataset.rows == ROWS
    assert table.schema.names == [c["name"] for c in dataset.columns]
    assert [_type_label(f.type) for f in table.schema] == [c["type"] for c in dataset.columns]
    for column, field in zip(dataset.columns, table.schema, strict=True):
        assert table.column(field.name).null_count == column["nulls"], field.name
    assert not list(tmp_path.glob("dataset-*")), "the decrypted file was left on disk"


@pytest.mark.django_db
def test_what_the_listing_detected_is_recorded_with_the_dataset(contracts, ipfs_node, tmp_path):
    dataset = listed(tmp_path, "bom-crlf.csv", seed=40)

    recorded = FileFormat.from_dict(dataset.read_format)
    assert (recorded.kind, recorded.delimiter, recorded.bom, recorded.line_ending) == (
        "csv", ";", True, "\r\n",
    )  # fmt: skip
    assert recorded.encoding == "utf-8" and recorded.quote_char == '"'
    assert set(recorded.column_types) == {"x", "count", "colour", "target"}


@pytest.mark.django_db
def test_a_latin1_file_is_refused_with_a_reason(contracts, ipfs_node, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("ville;prix\nZürich;12\nGenève;15\n".encode("latin-1"))
    dataset = dataset_create(
        owner=user_for(1), upload=path, original_filename=path.name, title="Latin-1",
        license="CC0-1.0", price_wei=1, enqueue=False,
    )  # fmt: skip

    dataset_process(dataset_id=dataset.pk)

    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.REJECTED
    assert "not UTF-8" in dataset.status_message and "Save it as CSV UTF-8" in (
        dataset.status_message
    )


@pytest.mark.django_db(transaction=True)
def test_every_accepted_file_trains_to_completion_on_a_worker(
    buyer_api, contracts, ipfs_node, celery_worker, tmp_path
):
    datasets = [listed(tmp_path, name, seed=10 + i) for i, name in enumerate(CORPUS)]
    runs = {}
    for dataset in datasets:
        body = buyer_api.post(
            "/api/training-runs",
            {"dataset_ids": [dataset.pk], "target_column": "target",
             "model": "logistic_regression", "seed": 1},
            format="json",
        ).json()  # fmt: skip
        assert "escrow" in body, body
        hint = buyer_api.post(
            f"/api/training-runs/{body['id']}/funding",
            {"tx_hash": wallet_pay(body["escrow"])},
            format="json",
        )
        assert hint.status_code == 200, hint.json()
        runs[dataset.original_filename] = body["id"]

    for name, run_id in runs.items():
        run = wait_for_run(run_id, "completed", "failed", timeout=180)
        assert run.status == TrainingRun.Status.COMPLETED, f"{name}: {run.error}"
        assert run.metrics["accuracy"] > 0.6, name


@pytest.mark.django_db
def test_a_file_listed_before_formats_were_recorded_is_read_as_the_listing_reads_it(
    contracts, ipfs_node, tmp_path
):
    dataset = listed(tmp_path, "quoted.csv", seed=50)
    recorded = dataset_rows(
        dataset=dataset, workdir=tmp_path, expected_sha256=dataset.content_sha256
    )
    Dataset.objects.filter(pk=dataset.pk).update(read_format={})
    dataset.refresh_from_db()

    detected = dataset_rows(
        dataset=dataset, workdir=tmp_path, expected_sha256=dataset.content_sha256
    )

    assert detected.equals(recorded)
