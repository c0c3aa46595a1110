"""Copycats earn nothing: an upload whose rows are mostly rows of another owner's listed dataset
is refused when it is listed, naming that listing, and nothing of it stays (no pin, no file, no
half-written row). The owner's own near-copies, disjoint shards of one source, low-entropy data
that shares common rows by nature, and copies of uploads that are not listed are listed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient
from sklearn.datasets import load_breast_cancer

from datasets.models import Dataset, MinHashBand, RowSignature, RowSignatureSample
from datasets.services import dataset_create, dataset_process
from tests.datasets.conftest import post_dataset, upload_files, wait_for_status
from tests.datasets.factories import user_for
from tests.training.conftest import list_file, shards


def cancer(rows: int = 200, start: int = 0) -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame.iloc[start : start + rows].reset_index(drop=True)


def write(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def upload(frame: pd.DataFrame, *, account: int, title: str, tmp_path, suffix=".csv", **fields):
    """An upload processed in-process by the listing pipeline (up to awaiting_signature, or
    rejected)."""
    path = tmp_path / f"{title.replace(' ', '-')}{suffix}"
    write(frame, path)
    dataset = dataset_create(
        owner=user_for(account), upload=path, original_filename=path.name, title=title,
        license="CC-BY-4.0", price_wei=10**15, enqueue=False, **fields,
    )  # fmt: skip
    dataset_process(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    return dataset


def listed(frame: pd.DataFrame, *, account: int, title: str, tmp_path) -> Dataset:
    """Listed through the whole pipeline: signed by the owner's key, registered on the chain."""
    path = tmp_path / f"{title.replace(' ', '-')}.csv"
    write(frame, path)
    return list_file(path, account=account, title=title, price_wei=10**15)


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Each float column to the fewest decimals that change no value by more than 0.1 %."""
    out = frame.copy()
    for name in frame.select_dtypes("float").columns:
        values = frame[name].to_numpy()
        for decimals in range(12):
            candidate = np.round(values, decimals)
            change = np.abs(candidate - values) / np.maximum(np.abs(values), 1e-300)
            if (change[values != 0] <= 0.001).all():
                out[name] = candidate
                break
    return out


def noisy(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every number multiplied by 1 ± up to 0.001."""
    rng = np.random.default_rng(seed)
    out = frame.astype({name: float for name in frame.select_dtypes("number").columns})
    for name in out.select_dtypes("number").columns:
        out[name] = out[name] * (1 + rng.uniform(-0.001, 0.001, len(out)))
    return out


def renamed_and_reordered(frame: pd.DataFrame) -> pd.DataFrame:
    order = np.random.default_rng(3).permutation(len(frame.columns))
    out = frame.iloc[:, order]
    out.columns = [f"feature_{i}" for i in range(len(out.columns))]
    return out


TRANSFORMS = {
    "shuffled rows": (lambda f: f.sample(frac=1.0, random_state=11), ".csv"),
    "renamed and reordered columns": (renamed_and_reordered, ".csv"),
    "CSV to Parquet": (lambda f: f, ".parquet"),
    "60 % of its rows": (lambda f: f.sample(frac=0.6, random_state=12), ".csv"),
    "values rounded within 0.1 %": (rounded, ".csv"),
    "values times 1 ± 0.001 noise": (lambda f: noisy(f, seed=13), ".csv"),
}


def assert_nothing_left(dataset: Dataset, pinned_before: set, files_before: set, pins) -> None:
    assert pins() == pinned_before
    assert upload_files() == files_before
    assert (dataset.cid, dataset.metadata_cid, dataset.content_sha256, dataset.upload_cid) == (
        ("", "", "", "")
    )
    assert dataset.wrapped_data_key is None and dataset.rows is None and dataset.columns == []
    assert not MinHashBand.objects.filter(dataset=dataset).exists()
    assert not RowSignature.objects.filter(dataset=dataset).exists()
    assert not RowSignatureSample.objects.filter(dataset=dataset).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("transform", list(TRANSFORMS))
def test_a_copy_of_another_owners_listing_is_refused_naming_it(
    transform, contracts, ipfs_node, pins, tmp_path
):
    original = listed(cancer(), account=1, title="Breast cancer shard 2", tmp_path=tmp_path)
    change, suffix = TRANSFORMS[transform]
    pinned_before, files_before = pins(), upload_files()

    copy = upload(
        change(cancer()), account=2, title="My own data", tmp_path=tmp_path, suffix=suffix
    )

    assert copy.status == Dataset.Status.REJECTED
    assert f"“Breast cancer shard 2” (dataset #{original.pk}" in copy.status_message
    assert_nothing_left(copy, pinned_before, files_before, pins)


@pytest.mark.django_db(transaction=True)
def test_a_copy_sent_to_the_worker_is_refused_with_a_reason_a_person_understands(
    contracts, ipfs_node, celery_worker, pins, tmp_path
):
    original = listed(cancer(), account=1, title="Breast cancer shard 2", tmp_path=tmp_path)
    copier = APIClient()
    copier.force_authenticate(user_for(2))
    pinned_before, files_before = pins(), upload_files()

    content = noisy(renamed_and_reordered(cancer()), seed=5).to_csv(index=False).encode()
    created = post_dataset(copier, content, title="Fresh measurements")

    assert created.status_code == 201
    copy = wait_for_status(created.json()["id"], Dataset.Status.REJECTED)
    assert copy.status_message == (
        f"All of these rows are rows of “Breast cancer shard 2” (dataset #{original.pk}), listed "
        "by another owner; a copy of someone else's data cannot be listed."
    )
    detail = copier.get(f"/api/datasets/{copy.pk}").json()
    assert detail["status"] == "rejected" and detail["status_message"] == copy.status_message
    assert_nothing_left(copy, pinned_before, files_before, pins)


@pytest.mark.django_db
def test_a_copy_mixed_with_rows_of_its_own_says_how_many_rows_are_copied(
    contracts, ipfs_node, tmp_path
):
    original = listed(cancer(300), account=1, title="Cancer", tmp_path=tmp_path)
    mixed = pd.concat([noisy(cancer(210), seed=1), cancer(90, start=300)])

    copy = upload(mixed, account=2, title="Mixed", tmp_path=tmp_path)

    assert copy.status == Dataset.Status.REJECTED
    assert copy.status_message.startswith(
        f"Most of these rows (70 %) are rows of “Cancer” (dataset #{original.pk})"
    )
    # Under half copied: listed.
    fewer = pd.concat([noisy(cancer(100), seed=2), cancer(169, start=400)])
    assert upload(fewer, account=2, title="Fewer", tmp_path=tmp_path).status == (
        Dataset.Status.AWAITING_SIGNATURE
    )


@pytest.mark.django_db
def test_disjoint_shards_of_one_source_from_different_owners_are_all_listed(
    contracts, ipfs_node, tmp_path
):
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]

    listings = [
        listed(part, account=1 + n % 3, title=f"Cancer shard {n + 1}", tmp_path=tmp_path)
        for n, part in enumerate(shards(frame, 5, seed=4))
    ]

    assert {d.status for d in listings} == {Dataset.Status.LISTED}
    assert RowSignature.objects.filter(dataset__in=listings).count() == len(frame)


@pytest.mark.django_db
def test_the_same_owners_near_copy_and_new_version_are_listed(contracts, ipfs_node, tmp_path):
    original = listed(cancer(), account=1, title="Cancer", tmp_path=tmp_path)

    near_copy = upload(noisy(cancer(), seed=1), account=1, title="Cancer again", tmp_path=tmp_path)
    version = upload(
        noisy(cancer(), seed=2), account=1, title="Cancer v2", tmp_path=tmp_path,
        parent_id=original.pk,
    )  # fmt: skip

    assert near_copy.status == Dataset.Status.AWAITING_SIGNATURE, near_copy.status_message
    assert version.status == Dataset.Status.AWAITING_SIGNATURE, version.status_message
    assert version.parent_id == original.pk


def small_integers(seed: int, rows: int, highs: tuple[int, ...]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"c{i}": rng.integers(0, high, rows) for i, high in enumerate(highs)})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "highs",
    [(10, 10), (100, 10), (12, 10, 6)],
    ids=["two columns 0-9", "columns 0-99 and 0-9", "three columns 0-11, 0-9, 0-5"],
)
def test_low_entropy_data_that_shares_common_rows_is_not_a_copy(
    highs, contracts, ipfs_node, tmp_path
):
    first = listed(small_integers(1, 300, highs), account=1, title="Counts", tmp_path=tmp_path)
    other = small_integers(2, 300, highs)
    shared = pd.merge(other, small_integers(1, 300, highs).drop_duplicates(), how="inner")
    assert len(shared) > 30  # many of its rows are rows of the first file too, by nature

    second = upload(other, account=2, title="Other counts", tmp_path=tmp_path)

    assert second.status == Dataset.Status.AWAITING_SIGNATURE, second.status_message
    assert RowSignatureSample.objects.get(dataset=first).repeated_rows > 0


@pytest.mark.django_db
def test_a_copy_of_an_upload_that_is_not_listed_is_not_blocked_by_it(
    contracts, ipfs_node, tmp_path
):
    waiting = upload(cancer(), account=1, title="Unsigned", tmp_path=tmp_path)
    assert waiting.status == Dataset.Status.AWAITING_SIGNATURE
    assert RowSignature.objects.filter(dataset=waiting).exists()

    copy = upload(noisy(cancer(), seed=1), account=2, title="Copy", tmp_path=tmp_path)
    assert copy.status == Dataset.Status.AWAITING_SIGNATURE, copy.status_message

    # A listing that failed keeps its rows in the index, and they do not count either.
    Dataset.objects.filter(pk=waiting.pk).update(status=Dataset.Status.FAILED)
    again = upload(noisy(cancer(), seed=2), account=3, title="Copy again", tmp_path=tmp_path)
    assert again.status == Dataset.Status.AWAITING_SIGNATURE, again.status_message

    # Once it is listed (here: the indexer found its transaction after all), they do.
    Dataset.objects.filter(pk=waiting.pk).update(status=Dataset.Status.LISTED)
    late = upload(noisy(cancer(), seed=3), account=3, title="Late copy", tmp_path=tmp_path)
    assert late.status == Dataset.Status.REJECTED
    assert f"“Unsigned” (dataset #{waiting.pk})" in late.status_message


def test_row_keys_tell_rows_apart_whatever_their_columns_names_and_order():
    from datasets.copycats import row_keys

    frame = cancer(300)
    keys = row_keys(frame)

    assert keys.dtype == np.uint64 and len(keys) == 300
    assert len(np.unique(keys)) == 300
    assert (row_keys(renamed_and_reordered(frame)) == keys).all()
    assert (row_keys(rounded(frame)) == keys).mean() > 0.6  # best effort: no probing
    mixed = pd.DataFrame(
        {
            "kind": pd.Categorical(["a", "b", None]),
            "count": pd.array([1, None, 3], dtype="Int64"),
            "day": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
            "note": ["  Some  TEXT", "x", ""],
        }
    )
    again = mixed[["note", "day", "count", "kind"]].assign(note=["some text", "X", None])
    assert (row_keys(mixed) == row_keys(again)).all()


@pytest.mark.django_db
def test_listings_made_before_the_check_are_indexed_by_a_command(contracts, ipfs_node, tmp_path):
    from django.core.management import call_command

    original = listed(cancer(), account=1, title="Listed before", tmp_path=tmp_path)
    RowSignature.objects.all().delete()
    RowSignatureSample.objects.all().delete()
    missed = upload(noisy(cancer(), seed=1), account=2, title="Missed", tmp_path=tmp_path)
    assert missed.status == Dataset.Status.AWAITING_SIGNATURE  # nothing to compare with

    call_command("index_row_signatures", stdout=io.StringIO())

    # The listing again and the copy let through meanwhile (awaiting its signature).
    assert set(RowSignatureSample.objects.values_list("dataset", flat=True)) == {
        original.pk,
        missed.pk,
    }
    caught = upload(noisy(cancer(), seed=2), account=3, title="Caught", tmp_path=tmp_path)
    assert caught.status == Dataset.Status.REJECTED
    assert f"“Listed before” (dataset #{original.pk})" in caught.status_message
