"""Browsing listed datasets: pagination, search, filters, ordering, and a constant number of
queries whatever the page size."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datasets.models import Dataset
from tests.datasets.factories import DEV_ADDRESSES, listed_dataset, user_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(db):
    alice, bob = user_for(1), user_for(2)
    return {
        "heart": listed_dataset(
            owner=alice, title="Heart rate recordings", description="Resting **ECG** intervals.",
            license="CC-BY-4.0", tags=["medical", "timeseries"], rows=5000, price_wei=3 * 10**16,
            columns=[{"name": "bpm", "type": "integer"}, {"name": "age", "type": "integer"}],
        ),
        "wine": listed_dataset(
            owner=alice, title="Wine chemistry", description="Chemical analysis of wines.",
            license="CC0-1.0", tags=["food"], rows=178, price_wei=10**16,
            columns=[{"name": "alcohol", "type": "float"}, {"name": "proline", "type": "integer"}],
        ),
        "taxi": listed_dataset(
            owner=bob, title="Taxi trips", description="Pickup and drop-off times.",
            license="ODbL-1.0", tags=["transport", "timeseries"], rows=120000, price_wei=5 * 10**17,
            columns=[{"name": "pickup", "type": "timestamp"}, {"name": "fare", "type": "float"}],
        ),
        "draft": listed_dataset(
            owner=bob, title="Unsigned taxi draft", status=Dataset.Status.AWAITING_SIGNATURE,
        ),
    }  # fmt: skip


def titles(client, **params) -> list[str]:
    response = client.get("/api/datasets", params)
    assert response.status_code == 200, response.json()
    return [d["title"] for d in response.json()["results"]]


def test_browsing_is_public_paginated_and_shows_only_listed_datasets(anonymous_api, catalogue):
    body = anonymous_api.get("/api/datasets", {"page_size": 2}).json()

    assert set(body) == {"count", "count_exact", "next", "previous", "results"}
    assert body["count"] == 3 and body["count_exact"] is True
    assert len(body["results"]) == 2 and body["previous"] is None
    assert "page=2" in body["next"]
    second = anonymous_api.get(body["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None
    first = body["results"][0]
    assert first["title"] == "Taxi trips"  # newest first
    assert first["price_wei"] == "500000000000000000"
    assert first["owner"] == {
        "address": DEV_ADDRESSES[2],
        "did": f"did:ethr:0x7a69:{DEV_ADDRESSES[2]}",
    }


@pytest.mark.parametrize(
    "search, expected",
    [
        ("wine", ["Wine chemistry"]),  # title
        ("ecg", ["Heart rate recordings"]),  # description
        ("transport", ["Taxi trips"]),  # tag
        ("proline", ["Wine chemistry"]),  # column name
        ("timeseries", ["Taxi trips", "Heart rate recordings"]),
        ("Heart RATE", ["Heart rate recordings"]),  # every word, any case
        ("heart taxi", []),
    ],
)
def test_search_covers_title_description_tags_and_column_names(
    anonymous_api, catalogue, search, expected
):
    assert titles(anonymous_api, search=search) == expected


def test_filters(anonymous_api, catalogue):
    assert titles(anonymous_api, license="CC0-1.0") == ["Wine chemistry"]
    assert titles(anonymous_api, tag="TimeSeries") == ["Taxi trips", "Heart rate recordings"]
    assert titles(anonymous_api, owner=DEV_ADDRESSES[1].lower()) == [
        "Wine chemistry", "Heart rate recordings",
    ]  # fmt: skip
    assert titles(anonymous_api, owner=f"did:ethr:0x7a69:{DEV_ADDRESSES[2]}") == ["Taxi trips"]
    assert titles(anonymous_api, min_rows=5000) == ["Taxi trips", "Heart rate recordings"]
    assert titles(anonymous_api, max_price_wei=str(3 * 10**16)) == [
        "Wine chemistry", "Heart rate recordings",
    ]  # fmt: skip
    assert titles(anonymous_api, tag="timeseries", max_price_wei=10**17) == [
        "Heart rate recordings"
    ]


@pytest.mark.parametrize(
    "ordering, expected",
    [
        ("created", ["Heart rate recordings", "Wine chemistry", "Taxi trips"]),
        ("-created", ["Taxi trips", "Wine chemistry", "Heart rate recordings"]),
        ("price_wei", ["Wine chemistry", "Heart rate recordings", "Taxi trips"]),
        ("-price_wei", ["Taxi trips", "Heart rate recordings", "Wine chemistry"]),
        ("rows", ["Wine chemistry", "Heart rate recordings", "Taxi trips"]),
        ("-rows", ["Taxi trips", "Heart rate recordings", "Wine chemistry"]),
    ],
)
def test_ordering_both_ways(anonymous_api, catalogue, ordering, expected):
    assert titles(anonymous_api, ordering=ordering) == expected


@pytest.mark.parametrize(
    "params, words",
    [
        ({"ordering": "owner"}, "The ordering filter is not valid"),
        ({"license": "WTFPL"}, "The license filter is not valid"),
        ({"min_rows": "many"}, "The min rows filter is not valid"),
        ({"max_price_wei": "-1"}, "The max price wei filter is not valid"),
    ],
)
def test_bad_filters_are_refused_with_a_message(anonymous_api, catalogue, params, words):
    response = anonymous_api.get("/api/datasets", params)

    assert response.status_code == 400
    assert words in response.json()["message"]


def test_queries_per_request_do_not_grow_with_page_size(anonymous_api):
    owners = [user_for(1), user_for(2), user_for(3)]
    for i in range(30):
        listed_dataset(owner=owners[i % 3], title=f"Dataset {i}", tags=["bulk"])

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = anonymous_api.get("/api/datasets", {"page_size": page_size, "tag": "bulk"})
        assert len(response.json()["results"]) == page_size
        return len(captured)

    # The catalogue version, (PostgreSQL) the planner's estimate, the count and the page,
    # whatever the page size; the same page again comes from the cache after the version is read.
    assert queries(2) == queries(30) == (4 if connection.vendor == "postgresql" else 3)
    assert queries(30) == 1


def test_a_cached_page_shows_a_change_at_once(anonymous_api, catalogue):
    assert titles(anonymous_api, search="taxi") == ["Taxi trips"]

    Dataset.objects.filter(pk=catalogue["draft"].pk).update(status=Dataset.Status.LISTED)
    assert titles(anonymous_api, search="taxi") == ["Unsigned taxi draft", "Taxi trips"]

    taxi = catalogue["taxi"]
    taxi.title = "Taxi trips 2024"
    taxi.save()
    assert titles(anonymous_api, search="taxi") == ["Unsigned taxi draft", "Taxi trips 2024"]

    Dataset.objects.filter(pk=taxi.pk).update(price_wei=1)
    body = anonymous_api.get("/api/datasets", {"search": "taxi", "ordering": "price_wei"}).json()
    assert [d["price_wei"] for d in body["results"]][0] == "1"


def test_a_page_past_the_end_or_malformed_is_refused(anonymous_api, catalogue):
    past = anonymous_api.get("/api/datasets", {"page": 9})
    assert past.status_code == 404
    assert past.json()["message"] == "There is no page 9: the last is 1."
    malformed = anonymous_api.get("/api/datasets", {"page": "two"})
    assert malformed.status_code == 400
    assert malformed.json()["message"] == "The page must be a whole number from 1."


def test_the_detail_is_public_once_listed_and_sanitizes_markdown(anonymous_api, owner):
    dataset = listed_dataset(
        owner=owner,
        title="Notes",
        description="**Bold** <script>alert(1)</script> [link](javascript:alert(1))",
    )

    body = anonymous_api.get(f"/api/datasets/{dataset.pk}").json()

    assert body["description_html"].startswith("<p><strong>Bold</strong>")
    assert "<script" not in body["description_html"]
    assert "javascript:" not in body["description_html"]
    assert body["owner"]["did"] == f"did:ethr:0x7a69:{owner.address}"
    assert "signing_request" not in body


def test_my_datasets_lists_every_status_for_the_owner_only(api, anonymous_api, catalogue):
    from rest_framework.test import APIClient

    bob = APIClient()
    bob.force_authenticate(user_for(2))

    mine = bob.get("/api/datasets/mine").json()

    assert [(d["title"], d["status"]) for d in mine["results"]] == [
        ("Unsigned taxi draft", "awaiting_signature"),
        ("Taxi trips", "listed"),
    ]
    assert anonymous_api.get("/api/datasets/mine").status_code == 401
