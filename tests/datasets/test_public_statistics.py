"""The public statistics of a listing (anonymous API, detail page, metadata pinned on IPFS) are
aggregates over at least PRIVACY_MIN_GROUP_ROWS rows: no value held by fewer rows, no raw
minimum or maximum, no histogram bin of fewer rows."""

import json
import re

import numpy as np
import pytest
from django.conf import settings
from django.test import Client

from datasets.models import Dataset
from marketplace.ipfs import iter_cat
from tests.datasets.test_listing_pipeline import listed

K = settings.PRIVACY_MIN_GROUP_ROWS
ROWS = 200


def table() -> tuple[bytes, dict]:
    rng = np.random.default_rng(11)
    salary = np.round(rng.normal(50_000, 8_000, ROWS), 2)
    salary[17] = 987654.321  # one row's extreme value
    notes = [f"unique-note-{i}-zq" if i % 4 else "no comment" for i in range(ROWS)]
    cities = ["Lyon", "Porto"] * (ROWS // 2)
    for i in (3, 90, 151):
        cities[i] = "Rareville"  # held by three rows
    lines = ["salary,note,city,label"]
    lines += [
        f"{s},{n},{c},{i % 2}"
        for i, (s, n, c) in enumerate(zip(salary, notes, cities, strict=True))
    ]
    secrets = {
        "extreme": salary.max(),
        "minimum": salary.min(),
        "rare": "Rareville",
        "notes": [n for n in notes if n != "no comment"],
    }
    return ("\n".join(lines) + "\n").encode(), secrets


def _has_number(text: str, value: float) -> bool:
    forms = {repr(float(value)), f"{value:,.2f}", f"{value:,.4g}", f"{value:.3e}"}
    return any(re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", text) for f in forms)


def assert_private(text: str, secrets: dict, where: str) -> None:
    assert "987654" not in text and "987,654" not in text, where
    assert not _has_number(text, secrets["extreme"]), where
    assert not _has_number(text, secrets["minimum"]), where
    assert secrets["rare"] not in text, where
    shown = [n for n in secrets["notes"] if n in text]
    assert shown == [], f"{where}: {len(shown)} notes of one row each, e.g. {shown[:2]}"


@pytest.mark.django_db(transaction=True)
def test_public_statistics_hold_no_value_of_fewer_than_k_rows_and_no_raw_extremes(
    api, anonymous_api, contracts, celery_worker
):
    content, secrets = table()
    dataset = listed(api, content)
    assert dataset.status == Dataset.Status.LISTED

    detail = anonymous_api.get(f"/api/datasets/{dataset.pk}")
    assert detail.status_code == 200
    page = Client().get(f"/datasets/{dataset.pk}/").content.decode()
    metadata = b"".join(iter_cat(dataset.metadata_cid)).decode()
    for where, text in (("API", detail.content.decode()), ("page", page), ("IPFS", metadata)):
        assert_private(text, secrets, where)

    for columns in (detail.json()["columns"], json.loads(metadata)["columns"]):
        by_name = {c["name"]: c for c in columns}
        salary = by_name["salary"]
        assert "min" not in salary and "max" not in salary
        assert salary["quantiles"]["low"] < salary["quantiles"]["high"] < 987654
        assert all(count >= K for count in salary["histogram"]["counts"])
        assert sum(salary["histogram"]["counts"]) == ROWS
        assert [v["value"] for v in by_name["city"]["top_values"]] == ["Lyon", "Porto"]
        assert [v["value"] for v in by_name["note"]["top_values"]] == ["no comment"]
