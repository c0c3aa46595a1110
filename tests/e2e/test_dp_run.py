import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in_with_dev_wallet

pytestmark = pytest.mark.e2e


def test_a_dp_run_page_shows_epsilon_and_the_leakage_audit(
    page, live_server, cancer_datasets, celery_worker
):
    sign_in_with_dev_wallet(page, live_server.url, 4)
    page.goto(live_server.url + "/commission/")
    for dataset in cancer_datasets:
        page.get_by_role("checkbox", name=dataset.title).check()
    page.get_by_label("Target column (what the model predicts)").fill("target")
    page.get_by_label("Model", exact=True).select_option("logistic_regression")
    page.get_by_label("Differential privacy ε (optional)").fill("2")
    page.get_by_role("button", name="Get the price").click()

    expect(page.get_by_test_id("quote-dp")).to_have_text("Differential privacy: ε = 2.")
    page.get_by_role("button", name="Pay from my wallet").click()

    page.wait_for_url("**/runs/*/", timeout=60_000)
    expect(page.get_by_test_id("run-dp")).to_have_text("ε = 2")
    expect(page.get_by_test_id("run-status")).to_have_text("Completed", timeout=120_000)
    audit = page.get_by_test_id("privacy-audit")
    expect(audit).to_contain_text("Trained with differential privacy: ε = 2")
    expect(audit).to_contain_text("(0.5 = nothing learnt about who was in the training set)")
    expect(audit).to_have_text(re.compile(r"Leakage audit: membership-inference AUC [01]\.\d\d "))
