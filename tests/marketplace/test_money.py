"""Amounts as people read and type them: ETH text <-> wei, exactly, and the listing form's price."""

from decimal import Decimal

import pytest
from django.template import Context, Template

from datasets.forms import DatasetUploadForm
from marketplace.fields import MAX_WEI
from marketplace.ipfs import unpin
from marketplace.money import eth_to_wei, wei_to_eth
from tests.datasets.factories import csv_upload, listed_dataset, measurements_csv, user_for


@pytest.mark.parametrize(
    ("text", "wei"),
    [
        ("0.015", 15 * 10**15),
        ("1", 10**18),
        ("0", 0),
        ("0.0", 0),
        ("  2.5 ", 25 * 10**17),
        (".5", 5 * 10**17),
        ("3.", 3 * 10**18),
        ("007.10", 71 * 10**17),
        ("0.000000000000000001", 1),
        ("123456789.123456789123456789", 123456789123456789123456789),
        ("0.123456789123456789", 123456789123456789),  # a float would end in ...784
        ("9007199254.740993", 9007199254740993 * 10**12),
    ],
)
def test_eth_text_becomes_the_exact_wei(text, wei):
    assert eth_to_wei(text) == wei


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Enter an amount in ETH."),
        ("   ", "Enter an amount in ETH."),
        ("-1", "cannot be negative"),
        ("-0.015", "cannot be negative"),
        ("1e-3", "without an exponent"),
        ("1.5E18", "without an exponent"),
        ("2e+5", "without an exponent"),
        ("0.0000000000000000001", "at most 18 decimals"),
        ("1.0000000000000000000", "at most 18 decimals"),
        ("abc", "like 0.015"),
        ("0,015", "with a dot for decimals"),
        ("1,000.5", "like 0.015"),
        ("+1", "like 0.015"),
        ("1.2.3", "like 0.015"),
        (".", "like 0.015"),
        ("1 000", "like 0.015"),
        ("1_000", "like 0.015"),
        ("0x10", "like 0.015"),
        ("NaN", "like 0.015"),
        ("Infinity", "like 0.015"),
        ("1 ETH", "like 0.015"),
        ("١٢", "like 0.015"),  # Arabic-Indic digits, which int() would accept
        ("１", "like 0.015"),  # a full-width digit
        ("2" * 60, "too large"),
        ("9" * 5000, "too large"),
        (str(MAX_WEI // 10**18 + 1), "too large"),
    ],
)
def test_anything_but_a_plain_eth_amount_is_refused_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        eth_to_wei(text)


@pytest.mark.parametrize("value", [None, 15, 0.015, Decimal("0.015"), b"1"])
def test_only_text_is_parsed(value):
    with pytest.raises(ValueError, match="like 0.015"):
        eth_to_wei(value)


def test_the_largest_amount_a_wei_column_holds_is_accepted():
    assert eth_to_wei(wei_to_eth(MAX_WEI)) == MAX_WEI


@pytest.mark.parametrize(
    ("wei", "text"),
    [
        (15 * 10**15, "0.015"),
        (0, "0"),
        (1, "0.000000000000000001"),
        (10**18, "1"),
        (25 * 10**17, "2.5"),
        (10**18 + 1, "1.000000000000000001"),
        (MAX_WEI, f"{MAX_WEI // 10**18}.584007913129639935"),
        (-5 * 10**17, "-0.5"),
        ("15000000000000000", "0.015"),
        (" 42 ", "0.000000000000000042"),
        (Decimal("15000000000000000"), "0.015"),
        (Decimal("1.5E+16"), "0.015"),
    ],
)
def test_wei_reads_as_exact_eth_without_trailing_zeros(wei, text):
    assert wei_to_eth(wei) == text


@pytest.mark.parametrize(
    "wei", [0.5, 1.0, "1.5", "1e18", "", "abc", Decimal("1.5"), Decimal("NaN"), None, True, [1]]
)
def test_only_whole_numbers_of_wei_are_formatted(wei):
    with pytest.raises(ValueError, match="whole number"):
        wei_to_eth(wei)


@pytest.mark.parametrize("wei", [0, 1, 999, 10**18 - 1, 10**18, 123456789 * 10**12, MAX_WEI])
def test_formatting_and_parsing_round_trip(wei):
    assert eth_to_wei(wei_to_eth(wei)) == wei


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (15000000000000000, "0.015"),
        ("25000000000000000", "0.025"),
        (Decimal(10**18), "1"),
        (None, ""),
        ("", ""),
        ("not a number", ""),
    ],
)
def test_the_eth_template_filter(value, shown):
    template = Template("{% load money %}{{ value|eth }}")

    assert template.render(Context({"value": value})) == shown


def _listing_form(price: str) -> DatasetUploadForm:
    return DatasetUploadForm(
        {"title": "Flowers", "license": "CC0-1.0", "price_eth": price},
        {"file": csv_upload(measurements_csv(seed=3))},
    )


def test_the_listing_form_takes_the_price_in_eth_and_hands_on_wei():
    form = _listing_form("0.015")

    assert form.is_valid(), form.errors
    assert form.cleaned_data["price_wei"] == 15000000000000000
    assert "price_eth" not in form.cleaned_data
    assert form.fields["price_eth"].label == "Price (ETH)"


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ("", "Enter a price in ETH, like 0.015."),
        ("-0.5", "The amount cannot be negative."),
        ("1e-2", "Write the amount out in full, without an exponent (0.015, not 1.5e-2)."),
        ("0.1234567890123456789", "ETH has at most 18 decimals"),
        ("cheap", "Enter an amount in ETH with a dot for decimals, like 0.015."),
        ("0,015", "Enter an amount in ETH with a dot for decimals, like 0.015."),
    ],
)
def test_the_listing_form_explains_a_price_it_cannot_read(price, message):
    form = _listing_form(price)

    assert not form.is_valid()
    assert list(form.errors) == ["price_eth"]
    assert form.errors["price_eth"][0].startswith(message)


@pytest.mark.django_db
def test_the_upload_page_stores_the_eth_price_in_wei(client, ipfs_node):
    from datasets.models import Dataset

    owner = user_for(1)
    client.force_login(owner)

    response = client.post(
        "/datasets/new/",
        {"file": csv_upload(measurements_csv(seed=4)), "title": "Flowers", "license": "CC0-1.0",
         "price_eth": "0.015"},
    )  # fmt: skip

    dataset = Dataset.objects.get(owner=owner)
    assert response.status_code == 302
    assert dataset.price_wei == 15000000000000000
    unpin(dataset.upload_cid)  # no worker runs in this test


@pytest.mark.django_db
def test_the_upload_page_shows_a_bad_price_next_to_the_field(client):
    from datasets.models import Dataset

    client.force_login(user_for(1))

    response = client.post(
        "/datasets/new/",
        {"file": csv_upload(measurements_csv(seed=5)), "title": "Flowers", "license": "CC0-1.0",
         "price_eth": "1e-3"},
    )  # fmt: skip

    assert response.status_code == 400
    assert "without an exponent" in response.content.decode()
    assert not Dataset.objects.exists()


@pytest.mark.django_db
def test_the_browse_page_filters_by_a_price_in_eth(client):
    listed_dataset(owner=user_for(1), title="Cheap set", price_wei=10**16)
    listed_dataset(owner=user_for(2), title="Dear set", price_wei=3 * 10**16)

    page = client.get("/datasets/", {"max_price": "0.02"}).content.decode()

    assert "Cheap set" in page and "Dear set" not in page
    assert 'name="max_price" value="0.02"' in page
    assert '<span title="10000000000000000 wei">0.01 ETH</span>' in page


@pytest.mark.django_db
def test_the_browse_page_explains_a_price_filter_it_cannot_read(client):
    listed_dataset(owner=user_for(1), title="Cheap set")

    page = client.get("/datasets/", {"max_price": "-1"}).content.decode()

    assert "The price filter is not valid: The amount cannot be negative." in page
    assert "Cheap set" not in page
