"""The whole listing flow in Chromium: sign in with the dev wallet, upload a CSV, sign the
listing, watch it reach `listed`, find it by search, open it and verify it. The price is typed
in ETH and stored exactly in wei."""

import re

import pytest
from playwright.sync_api import expect

from datasets.models import Dataset
from tests.datasets.factories import measurements_csv

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_list_a_dataset_find_it_and_verify_it(signed_in_page, live_server, celery_worker):
    page = signed_in_page
    page.goto(live_server.url + "/datasets/new/")
    page.get_by_label("File").set_input_files(
        files=[{"name": "lakes.csv", "mimeType": "text/csv", "buffer": measurements_csv(seed=99)}]
    )
    page.get_by_label("Title").fill("Alpine lake flowers")
    page.get_by_label("Description").fill("Measured on the shores of **alpine lakes**.")
    page.get_by_label("License").select_option("CC-BY-4.0")
    page.get_by_label("Price (ETH)").fill("0.015")
    page.get_by_label("Tags").fill("botany, alpine")
    page.get_by_role("button", name="Upload and check").click()

    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    status = page.get_by_test_id("dataset-status")
    expect(status).to_have_text("Awaiting signature", timeout=60_000)
    expect(page.get_by_test_id("schema")).to_contain_text("sepal_length")

    page.get_by_role("button", name="Sign the listing").click()  # the dev wallet asks; we accept

    expect(status).to_have_text("Listed", timeout=60_000)
    detail_url = page.url
    cid = page.get_by_test_id("dataset-cid").inner_text()
    assert cid.startswith(("Qm", "b"))

    page.goto(live_server.url + "/datasets/")
    page.get_by_test_id("search").fill("alpine")
    page.get_by_role("button", name="Search").click()
    result = page.get_by_role("link", name="Alpine lake flowers")
    expect(result).to_be_visible()
    result.click()
    expect(page).to_have_url(detail_url)
    price = page.get_by_test_id("dataset-price")
    expect(price).to_have_text("0.015 ETH")
    expect(price).to_have_attribute("title", "15000000000000000 wei")
    dataset_id = int(re.search(r"/datasets/(\d+)/$", detail_url).group(1))
    assert Dataset.objects.get(pk=dataset_id).price_wei == 15000000000000000

    page.get_by_role("button", name="Verify").click()

    verdict = page.get_by_test_id("verify-summary")
    expect(verdict).to_have_text(
        "All checks passed: IPFS, the chain and this page agree.", timeout=30_000
    )
    expect(page.get_by_test_id("verify-result").locator(".check-ok")).to_have_count(5)


def test_a_price_that_is_not_plain_eth_is_explained_next_to_the_field(signed_in_page, live_server):
    page = signed_in_page
    page.goto(live_server.url + "/datasets/new/")
    page.get_by_label("File").set_input_files(
        files=[{"name": "lakes.csv", "mimeType": "text/csv", "buffer": measurements_csv(seed=98)}]
    )
    page.get_by_label("Title").fill("Alpine lake flowers")
    page.get_by_label("License").select_option("CC-BY-4.0")
    page.get_by_label("Price (ETH)").fill("1.5e-2")
    page.get_by_role("button", name="Upload and check").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Write the amount out in full, without an exponent (0.015, not 1.5e-2)."
    )
    expect(page.get_by_label("Price (ETH)")).to_have_value("1.5e-2")
    assert not Dataset.objects.exists()
