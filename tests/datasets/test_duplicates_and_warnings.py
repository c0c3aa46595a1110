"""Quality checks that compare an upload with other listings, and the warnings an owner sees."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from datasets.models import Dataset
from tests.datasets.conftest import post_dataset, wait_for_status
from tests.datasets.factories import measurements_csv, user_for

pytestmark = pytest.mark.django_db(transaction=True)


def processed(client, content: bytes, *statuses: str, **fields) -> Dataset:
    created = post_dataset(client, content, **fields)
    assert created.status_code == 201, created.json()
    return wait_for_status(created.json()["id"], *statuses)


def test_an_exact_duplicate_of_a_listing_is_rejected_naming_it(api, contracts, celery_worker, pins):
    content = measurements_csv(seed=31)
    first = processed(api, content, Dataset.Status.AWAITING_SIGNATURE, title="Original")
    list_it(first)
    copier = APIClient()
    copier.force_authenticate(user_for(2))
    pinned_before = pins()

    copy = processed(copier, content, Dataset.Status.REJECTED, title="Copy")

    assert copy.status_message == (
        f"The same data is already listed as “Original” (dataset #{first.pk}). An exact "
        "duplicate cannot be listed again."
    )
    assert pins() == pinned_before


def test_the_same_rows_reordered_are_an_exact_duplicate_too(api, contracts, celery_worker):
    content = measurements_csv(seed=32)
    header, *rows = content.decode().splitlines()
    processed(api, content, Dataset.Status.AWAITING_SIGNATURE, title="Original")
    reordered = "\n".join([header, *reversed(rows)]) + "\n"

    copy = processed(api, reordered.encode(), Dataset.Status.REJECTED)

    assert "already listed as “Original”" in copy.status_message
    assert "yours" in copy.status_message


def test_a_near_duplicate_is_listed_with_a_warning_naming_the_similar_listing(
    api, contracts, celery_worker
):
    content = measurements_csv(seed=33, rows=400)
    lines = content.decode().splitlines()
    original = processed(api, content, Dataset.Status.AWAITING_SIGNATURE, title="Original")
    list_it(original)
    # 360 of the 400 rows again, plus 40 new ones: most rows shared.
    fresh = measurements_csv(seed=34, rows=40).decode().splitlines()[1:]
    overlapping = "\n".join(lines[:361] + fresh) + "\n"

    similar = processed(api, overlapping.encode(), Dataset.Status.AWAITING_SIGNATURE)

    near = [w for w in similar.quality_warnings if w["code"] == "near_duplicate"]
    assert [w["similar_dataset"] for w in near] == [original.pk]
    assert "shared with “Original”" in near[0]["message"]
    assert near[0]["similarity"] >= 0.5


def test_quality_warnings_and_inert_formula_cells_reach_the_owner(api, contracts, celery_worker):
    rows = [f'{i},user{i}@example.org,{i % 7},same,=HYPERLINK("http://x")' for i in range(40)]
    content = ("row_id,email,bucket,origin,note\n" + "\n".join(rows) + "\n").encode()

    dataset = processed(api, content, Dataset.Status.AWAITING_SIGNATURE)

    detail = api.get(f"/api/datasets/{dataset.pk}").json()
    codes = {(w["code"], w.get("column")) for w in detail["quality_warnings"]}
    assert {
        ("identifier_column", "row_id"),
        ("personal_data", "email"),
        ("constant_column", "origin"),
        ("formula_cells", "note"),
    } <= codes
    columns = {c["name"]: c for c in detail["columns"]}
    assert columns["email"]["values_withheld"] and "top_values" not in columns["email"]
    assert columns["note"]["top_values"][0]["value"] == '\'=HYPERLINK("http://x")'

    browser = Client()
    browser.force_login(dataset.owner)
    page = browser.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "&#x27;=HYPERLINK(&quot;http://x&quot;)" in page
    assert "user1@example.org" not in page


# --- only listed datasets are compared with and named -------------------------------------------


def list_it(dataset: Dataset) -> None:
    """The listing as registration leaves it (the chain part is tested in test_listing_pipeline)."""
    Dataset.objects.filter(pk=dataset.pk).update(
        status=Dataset.Status.LISTED, stage=Dataset.Stage.DONE
    )


def another_owner() -> APIClient:
    client = APIClient()
    client.force_authenticate(user_for(2))
    return client


def test_a_copy_of_another_owners_unlisted_upload_does_not_learn_its_title_or_id(
    api, contracts, celery_worker
):
    content = measurements_csv(seed=35)
    unlisted = processed(api, content, Dataset.Status.AWAITING_SIGNATURE, title="Unsigned secret")

    copy = processed(another_owner(), content, Dataset.Status.REJECTED, title="Copy")

    assert "Unsigned secret" not in copy.status_message
    assert f"#{unlisted.pk}" not in copy.status_message
    assert copy.status_message == (
        "The same data is already being listed by another owner. An exact duplicate cannot be "
        "listed again."
    )


def test_a_near_duplicate_of_another_owners_unlisted_upload_gets_no_warning_naming_it(
    api, contracts, celery_worker
):
    content = measurements_csv(seed=36, rows=400)
    lines = content.decode().splitlines()
    unlisted = processed(api, content, Dataset.Status.AWAITING_SIGNATURE, title="Unsigned secret")
    fresh = measurements_csv(seed=37, rows=40).decode().splitlines()[1:]
    overlapping = ("\n".join(lines[:361] + fresh) + "\n").encode()

    similar = processed(another_owner(), overlapping, Dataset.Status.AWAITING_SIGNATURE)

    assert not [w for w in similar.quality_warnings if w["code"] == "near_duplicate"]
    text = str(similar.quality_warnings)
    assert "Unsigned secret" not in text and f"#{unlisted.pk}" not in text

    # Once the first one is listed, it is named: another owner's near-copy of it is refused as
    # a copy (test_copycats), its owner's own is warned about (above).
    list_it(unlisted)
    fresh = measurements_csv(seed=38, rows=40).decode().splitlines()[1:]
    again = ("\n".join(lines[:361] + fresh) + "\n").encode()
    third = processed(another_owner(), again, Dataset.Status.REJECTED)
    assert f"rows of “Unsigned secret” (dataset #{unlisted.pk}), listed by another owner" in (
        third.status_message
    )
