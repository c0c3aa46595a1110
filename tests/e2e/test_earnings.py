import re
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from chain.client import get_web3
from chain.wrappers import TrainingEscrow
from marketplace.money import wei_to_eth
from tests.e2e.conftest import sign_in_with_dev_wallet
from tests.training.conftest import run_to_completion

pytestmark = pytest.mark.e2e


def test_contributor_sees_the_reported_amount_and_withdraws_it(
    page, live_server, completed_run, cancer_datasets
):
    dataset = cancer_datasets[0]
    owner = dataset.owner.address
    assigned = next(
        d["amount_wei"]
        for d in completed_run.report["datasets"]
        if d["listing_id"] == dataset.listing_id
    )
    w3 = get_web3()
    owed = TrainingEscrow.deployed().balance_of(owner)
    before = w3.eth.get_balance(owner)

    sign_in_with_dev_wallet(page, live_server.url, 1)
    page.get_by_role("link", name="Earnings").click()

    entries = page.get_by_test_id("entries")
    entry = entries.get_by_role("row").filter(has_text=f"{dataset.title} #{dataset.pk}")
    expect(entry.locator(".amount")).to_have_text(f"{wei_to_eth(assigned)} ETH")
    expect(entry.locator(".amount")).to_have_attribute("title", f"{assigned} wei")
    expect(page.get_by_test_id("per-dataset")).to_contain_text(f"{dataset.title} #{dataset.pk}")
    withdrawable = page.get_by_test_id("withdrawable").locator(".amount")
    expect(withdrawable).to_have_text(f"{wei_to_eth(owed)} ETH")
    expect(withdrawable).to_have_attribute("title", f"{owed} wei")
    chart = page.locator("#timeline-chart svg")
    expect(chart).to_have_count(1)
    # Dated x ticks ("Dec 2, 14:05" or "Dec 2, 2026") and ETH y ticks from 0 to at least the total.
    x_ticks = chart.locator(".chart-x-axis .chart-tick")
    expect(x_ticks.first).to_have_text(re.compile(r"[A-Z][a-z]{2} \d{1,2}, "))
    assert x_ticks.count() >= 2
    y_ticks = chart.locator(".chart-y-axis .chart-tick").all_text_contents()
    assert y_ticks[0] == "0" and all(re.fullmatch(r"\d+(\.\d+)?", t) for t in y_ticks)
    total = page.get_by_test_id("total-earned").locator(".amount").get_attribute("title")
    assert Decimal(y_ticks[-1]) * 10**18 >= int(total.removesuffix(" wei"))
    expect(chart.get_by_text("ETH earned in total")).to_be_visible()
    withdraw = page.get_by_role("button", name="Withdraw")
    expect(withdraw).to_be_enabled()

    withdraw.click()

    message = page.locator("#earnings-message")
    expect(message).to_contain_text("Withdrawn.", timeout=30_000)
    expect(page.get_by_test_id("withdrawable")).to_have_text("0 ETH")
    expect(withdraw).to_be_disabled()
    withdrawn = page.get_by_test_id("withdrawals").locator(f'.amount[title="{owed} wei"]')
    expect(withdrawn).to_have_text(f"{wei_to_eth(owed)} ETH")
    tx_hash = re.search(r"0x[0-9a-f]{64}", message.text_content()).group(0)
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(owner) == before + owed - gas
    assert owed >= int(assigned)


def test_someone_who_never_listed_sees_the_empty_state(page, live_server, contracts):
    sign_in_with_dev_wallet(page, live_server.url, 5)  # an account no test pays
    page.get_by_role("link", name="Earnings").click()

    expect(page.get_by_text("No earnings yet.")).to_be_visible()
    expect(page.get_by_role("button", name="Withdraw")).to_be_disabled()


@pytest.fixture
def curated_run(buyer_api, cancer_datasets, celery_worker):
    return run_to_completion(buyer_api, cancer_datasets, model="random_forest", seed=1, curate=True)


def test_an_owner_sees_how_many_of_their_rows_a_curated_run_left_out(
    page, live_server, curated_run, cancer_datasets
):
    noisy = cancer_datasets[1]  # its labels are shuffled: many rows contradict the rest
    left_out = curated_run.inputs.get(dataset=noisy).excluded_rows
    assert left_out > 0

    sign_in_with_dev_wallet(page, live_server.url, 2)
    page.get_by_role("link", name="Earnings").click()

    entry = (
        page.get_by_test_id("entries")
        .get_by_role("row")
        .filter(has_text=f"{noisy.title} #{noisy.pk}")
    )
    expect(entry.get_by_test_id("entry-excluded-rows")).to_have_text(
        f"{left_out} left out as harmful"
    )
    # Counts only: the page names no row.
    expect(page.locator("body")).not_to_contain_text("mean_radius")
