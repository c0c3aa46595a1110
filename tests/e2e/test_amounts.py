"""Amounts as people read them, in Chromium: prices in ETH with the exact wei in a tooltip, and
shards of one set told apart by their id."""

import pytest
from playwright.sync_api import expect
from sklearn.datasets import load_breast_cancer

from marketplace.fields import MAX_WEI
from marketplace.money import wei_to_eth
from tests.e2e.conftest import sign_in_with_dev_wallet
from tests.training.conftest import list_frame, shards
from training.models import TrainingRun

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Prices as a buyer reads them; the last one a float cannot hold (it would end in ...784).
PRICES = {
    15 * 10**15: "0.015 ETH",
    1: "0.000000000000000001 ETH",
    123456789123456789: "0.123456789123456789 ETH",
}


@pytest.fixture
def three_shards(contracts, ipfs_node, tmp_path):
    """Three shards of the breast-cancer set, listed under one title by three owners."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return [
        list_frame(part, account=n + 1, title="Cancer shard", price_wei=price, tmp_path=tmp_path)
        for n, (part, price) in enumerate(zip(shards(frame, 3, seed=2), PRICES, strict=True))
    ]


def test_a_quote_names_each_shard_and_prices_it_exactly_in_eth(page, live_server, three_shards):
    sign_in_with_dev_wallet(page, live_server.url, 4)
    page.goto(live_server.url + "/commission/?q=shard")

    for dataset in three_shards:
        box = page.locator(f'input[name=dataset_ids][value="{dataset.pk}"]')
        listed_price = page.locator("label.check-row", has=box).locator(".amount")
        expect(listed_price).to_have_text(f"{wei_to_eth(dataset.price_wei)} ETH")
        expect(listed_price).to_have_attribute("title", f"{dataset.price_wei} wei")
        box.check()
    page.get_by_label("Target column (what the model predicts)").fill("target")
    page.get_by_role("button", name="Get the price").click()

    quote = page.get_by_test_id("quote-table")
    expect(quote.get_by_role("row")).to_have_count(4)
    for dataset in three_shards:
        row = quote.get_by_role("row").filter(has_text=f"Cancer shard #{dataset.pk}")
        expect(row.locator(".amount")).to_have_text(PRICES[dataset.price_wei])
        expect(row.locator(".amount")).to_have_attribute("title", f"{dataset.price_wei} wei")
    expect(quote).not_to_contain_text("listing")
    run = TrainingRun.objects.get()  # the quote is a run awaiting payment
    fee = quote.get_by_role("row").filter(has_text="Compute fee").locator(".amount")
    expect(fee).to_have_text(f"{wei_to_eth(run.compute_fee_wei)} ETH")
    total = page.get_by_test_id("quote-total").locator(".amount")
    expect(total).to_have_text(f"{wei_to_eth(run.price_wei)} ETH")
    expect(total).to_have_attribute("title", f"{run.price_wei} wei")
    assert run.price_wei == sum(PRICES) + run.compute_fee_wei


def test_the_page_script_formats_wei_exactly_as_the_server_does(page, live_server):
    amounts = [0, 1, 999, 10**18, 10**18 + 1, 2**53 + 1, 123456789123456789, MAX_WEI]
    page.goto(live_server.url + "/datasets/")

    shown = page.evaluate(
        "(amounts) => amounts.map((wei) => window.MarketplaceMoney.formatEth(wei))",
        [str(a) for a in amounts],
    )

    assert shown == [wei_to_eth(a) for a in amounts]
