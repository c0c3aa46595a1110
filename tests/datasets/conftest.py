"""Helpers for the dataset tests: upload through the API, wait for the real worker, look at the
IPFS node's pins and the upload directory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from datasets.models import Dataset
from marketplace.ipfs import pinned_cids
from tests.datasets.factories import csv_upload, listing_fields, user_for


@pytest.fixture
def owner(db, ipfs_node):
    """A signed-in owner; what they upload is staged on the session's IPFS node."""
    return user_for(1)


@pytest.fixture
def api(owner):
    client = APIClient()
    client.force_authenticate(owner)
    return client


@pytest.fixture
def anonymous_api():
    return APIClient()


def post_dataset(client: APIClient, content: bytes, name: str = "measurements.csv", **fields):
    return client.post(
        "/api/datasets",
        {**listing_fields(**fields), "file": csv_upload(content, name)},
        format="multipart",
    )


def wait_for_status(dataset_id: int, *statuses: str, timeout: float = 90) -> Dataset:
    """Poll the database until the worker moved the dataset to one of `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dataset = Dataset.objects.get(pk=dataset_id)
        if dataset.status in statuses:
            return dataset
        if dataset.is_final:
            raise AssertionError(
                f"dataset {dataset_id} ended {dataset.status}: {dataset.status_message}"
            )
        time.sleep(0.2)
    raise AssertionError(f"dataset {dataset_id} is still {dataset.status} ({dataset.stage})")


def upload_files() -> set[str]:
    directory = Path(settings.DATASET_UPLOAD_DIR)
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


@pytest.fixture
def pins(ipfs_node):
    """The IPFS node's pins now; `pins()` again after the action to compare."""
    return pinned_cids
