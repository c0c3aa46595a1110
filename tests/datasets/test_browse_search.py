"""Searching the catalogue (word prefixes on PostgreSQL), search text that looks like query
syntax, and counts that are estimates once the matches are many."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datasets import selectors
from tests.datasets.factories import listed_dataset, user_for

pytestmark = pytest.mark.django_db
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite matches a word anywhere (substring)"
)


@pytest.fixture
def catalogue(db):
    owner = user_for(1)
    listed_dataset(
        owner=owner, title="Heart rate recordings", description="Resting ECG, drop-off times.",
        tags=["medical"], columns=[{"name": "sepal_length", "type": "float"}],
    )  # fmt: skip
    listed_dataset(owner=owner, title="Sweetheart letters", description="Letters it's said.")
    listed_dataset(owner=owner, title="Wine chemistry", description="Heartwood barrels.")


def titles(client, search: str) -> list[str]:
    response = client.get("/api/datasets", {"search": search})
    assert response.status_code == 200, response.json()
    return sorted(d["title"] for d in response.json()["results"])


@postgresql_only
@pytest.mark.parametrize(
    "search, expected",
    [
        ("heart", ["Heart rate recordings", "Wine chemistry"]),  # "Heartwood" starts with it
        ("HEA", ["Heart rate recordings", "Wine chemistry"]),
        ("eart", []),  # inside a word: not a match any more
        ("heart rate", ["Heart rate recordings"]),  # every word must match
        ("heart wine", ["Wine chemistry"]),
        ("heart letters", []),
        ("sepal", ["Heart rate recordings"]),  # a column name's parts
        ("sepal_len", ["Heart rate recordings"]),
        ("drop-of", ["Heart rate recordings"]),
        ("it's", ["Sweetheart letters"]),
        ("medical", ["Heart rate recordings"]),  # a tag
    ],
)
def test_a_search_word_matches_the_start_of_words(anonymous_api, catalogue, search, expected):
    assert titles(anonymous_api, search) == expected


@pytest.mark.parametrize(
    "search",
    ["'", "''", ":", ":*", "&", "|", "!", "(", ")", "\\", "\\'", "wine:*", "wine & !heart",
     "wine | heart", "!wine", "(wine", "wine)", "wine\\", "'wine'", "<->", "wine <-> heart",
     "a:b:c", "%", "_", "é", "東京", "wine" * 50],
)  # fmt: skip
def test_search_text_that_looks_like_query_syntax_is_only_text(anonymous_api, catalogue, search):
    response = anonymous_api.get("/api/datasets", {"search": search})
    page = anonymous_api.get("/datasets/", {"search": search})

    assert response.status_code == 200, response.json()
    assert page.status_code == 200


@postgresql_only
def test_operators_in_a_search_are_read_as_text(anonymous_api, catalogue):
    assert titles(anonymous_api, "wine:*") == ["Wine chemistry"]
    assert titles(anonymous_api, "wine | letters") == []  # "|" says nothing; both words needed
    assert titles(anonymous_api, "!wine") == ["Wine chemistry"]  # not a negation
    assert titles(anonymous_api, "(wine)") == ["Wine chemistry"]


def test_an_empty_search_or_one_without_letters_lists_everything(anonymous_api, catalogue):
    everything = ["Heart rate recordings", "Sweetheart letters", "Wine chemistry"]
    assert titles(anonymous_api, "") == everything
    assert titles(anonymous_api, "   ") == everything
    assert titles(anonymous_api, "& | !") == everything


def test_search_words_are_lower_cased_and_at_most_ten():
    assert selectors.search_words("  Heart  RATE & -- x1 ") == ("heart", "rate", "x1")
    assert len(selectors.search_words(" ".join(f"w{i}" for i in range(20)))) == 10


@pytest.fixture
def many(db):
    owners = [user_for(1), user_for(2)]
    for i in range(30):
        listed_dataset(owner=owners[i % 2], title=f"Sensor log {i}", tags=["bulk"])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE datasets_dataset")  # as autovacuum does: the planner's figures


@postgresql_only
def test_many_matches_are_counted_by_estimate_and_said_so(anonymous_api, many, monkeypatch):
    monkeypatch.setattr(selectors, "EXACT_COUNT_UP_TO", 5)
    query = {"license": "CC-BY-4.0", "page_size": 10}

    first = anonymous_api.get("/api/datasets", query).json()
    last = anonymous_api.get("/api/datasets", {**query, "page": 3})
    past = anonymous_api.get("/api/datasets", {**query, "page": 4})
    page = anonymous_api.get("/datasets/", {"license": "CC-BY-4.0"}).content.decode()

    assert first["count_exact"] is False
    assert first["count"] >= 11 and len(first["results"]) == 10
    assert "page=2" in first["next"]
    # The last page shows where the matches end: the count is exact there.
    assert last.json()["count_exact"] is True and last.json()["count"] == 30
    assert len(last.json()["results"]) == 10 and last.json()["next"] is None
    assert past.status_code == 404
    assert past.json()["message"] == "There is no page 4: the last is 3."
    assert result_count(page).startswith("about ")
    assert result_count(page).endswith(" datasets match")
    assert "Page 1 of about" in page


def test_few_matches_are_counted_exactly(anonymous_api, many):
    body = anonymous_api.get("/api/datasets", {"search": "sensor", "page_size": 10}).json()
    page = anonymous_api.get("/datasets/", {"search": "sensor"}).content.decode()

    assert body["count"] == 30 and body["count_exact"] is True
    assert result_count(page) == "30 datasets match"


def result_count(page: str) -> str:
    return re.search(r'data-testid="result-count">([^<]*)</p>', page).group(1)


def queries(client, path: str, params: dict) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, params)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("exact_up_to", [1_000, 5])
@pytest.mark.parametrize("search", ["", "sensor"])
def test_queries_per_request_do_not_grow_with_the_page(
    anonymous_api, many, monkeypatch, exact_up_to, search
):
    monkeypatch.setattr(selectors, "EXACT_COUNT_UP_TO", exact_up_to)
    params = {"search": search, "ordering": "-rows"}

    small = queries(anonymous_api, "/api/datasets", {**params, "page_size": 2})
    large = queries(anonymous_api, "/api/datasets", {**params, "page_size": 100})
    full = queries(anonymous_api, "/datasets/", params)  # 20 on the page
    rest = queries(anonymous_api, "/datasets/", {**params, "page": 2})  # 10

    assert small == large <= 4
    assert full == rest <= 4
