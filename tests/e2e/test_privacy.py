"""Privacy in Chromium: an owner lists a file with e-mail, name, phone and free-text columns, a
buyer trains on it and downloads the model; the model holds none of the rare or flagged values,
and the run page says which columns were left out and why."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in_with_dev_wallet
from tests.training.test_leaks import customer_calls, model_file_text, secrets_of
from training.models import TrainingRun

pytestmark = pytest.mark.e2e


def test_an_owners_people_data_trains_a_model_that_holds_no_rare_value(
    page, browser, live_server, contracts, celery_worker, tmp_path
):
    frame = customer_calls(seed=23)
    secrets = secrets_of(frame, settings.PRIVACY_MIN_GROUP_ROWS)
    sign_in_with_dev_wallet(page, live_server.url, 1)
    page.goto(live_server.url + "/datasets/new/")
    page.get_by_label("File").set_input_files(
        files=[
            {
                "name": "calls.csv",
                "mimeType": "text/csv",
                "buffer": frame.to_csv(index=False).encode(),
            }
        ]
    )
    page.get_by_label("Title").fill("Customer calls")
    page.get_by_label("License").select_option("CC-BY-4.0")
    page.get_by_label("Price (ETH)").fill("0.01")
    page.get_by_role("button", name="Upload and check").click()
    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    status = page.get_by_test_id("dataset-status")
    expect(status).to_have_text("Awaiting signature", timeout=60_000)
    page.get_by_role("button", name="Sign the listing").click()
    expect(status).to_have_text("Listed", timeout=60_000)

    buyer = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in_with_dev_wallet(buyer, live_server.url, 4)
    buyer.goto(live_server.url + "/commission/")
    buyer.get_by_role("checkbox", name="Customer calls").check()
    buyer.get_by_label("Target column (what the model predicts)").fill("churned")
    buyer.get_by_label("Model", exact=True).select_option("logistic_regression")
    buyer.get_by_role("button", name="Get the price").click()
    buyer.get_by_role("button", name="Pay from my wallet").click()
    buyer.wait_for_url("**/runs/*/", timeout=60_000)
    expect(buyer.get_by_test_id("run-status")).to_have_text("Completed", timeout=120_000)

    excluded = buyer.get_by_test_id("excluded-columns")
    for column in ("email", "full_name", "phone", "notes"):
        expect(excluded.get_by_role("row").filter(has_text=column)).to_have_count(1)
    expect(excluded).to_contain_text("personal data")
    expect(buyer.get_by_test_id("privacy")).to_contain_text("folded into one")
    audit = buyer.get_by_test_id("privacy-audit")
    expect(audit).to_have_text(re.compile(r"Leakage audit: membership-inference AUC [01]\.\d\d "))
    with buyer.expect_download() as download_info:
        buyer.get_by_role("link", name="Download the model (skops)").click()
    path = tmp_path / "model.skops"
    download_info.value.save_as(path)

    stored = model_file_text(path.read_bytes())
    assert sorted(s for s in secrets if s in stored) == []
    assert "Lyon" in stored
    run = TrainingRun.objects.get(pk=int(buyer.url.rstrip("/").rsplit("/", 1)[1]))
    assert run.status == "completed"
