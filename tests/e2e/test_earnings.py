import re

import pytest
from playwright.sync_api import expect

from chain.client import get_web3
from chain.wrappers import TrainingEscrow
from tests.e2e.conftest import sign_in_with_dev_wallet

pytestmark = pytest.mark.e2e


def test_contributor_sees_the_reported_amount_and_withdraws_it(
    page, live_server, completed_run, cancer_datasets
):
    dataset = cancer_datasets[0]
    owner = dataset.owner.address
    assigned = next(
        d["amount_wei"] for d in completed_run.report["datasets"] if d["dataset"] == dataset.pk
    )
    w3 = get_web3()
    owed = TrainingEscrow.deployed().balance_of(owner)
    before = w3.eth.get_balance(owner)

    sign_in_with_dev_wallet(page, live_server.url, 1)
    page.get_by_role("link", name="Earnings").click()

    entries = page.get_by_test_id("entries")
    expect(entries).to_contain_text(dataset.title)
    expect(entries).to_contain_text(assigned)
    expect(page.get_by_test_id("per-dataset")).to_contain_text(dataset.title)
    expect(page.locator("#timeline-chart svg")).to_have_count(1)
    withdraw = page.get_by_role("button", name="Withdraw")
    expect(withdraw).to_be_enabled()

    withdraw.click()

    message = page.locator("#earnings-message")
    expect(message).to_contain_text("Withdrawn.", timeout=30_000)
    expect(page.get_by_test_id("withdrawable")).to_have_text("0.000000 ETH")
    expect(withdraw).to_be_disabled()
    expect(page.get_by_test_id("withdrawals")).to_contain_text(str(owed))
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
