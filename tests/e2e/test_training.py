import pytest
import skops.io as sio
from playwright.sync_api import expect
from sklearn.datasets import load_breast_cancer

from tests.e2e.conftest import sign_in_with_dev_wallet

pytestmark = pytest.mark.e2e


def test_buyer_commissions_pays_watches_and_downloads_a_model(
    page, live_server, cancer_datasets, celery_worker, tmp_path
):
    sign_in_with_dev_wallet(page, live_server.url, 4)  # the buyer, not an owner
    page.get_by_role("link", name="Commission a model").click()

    for dataset in cancer_datasets:
        page.get_by_role("checkbox", name=dataset.title).check()
    page.get_by_label("Target column (what the model predicts)").fill("target")
    page.get_by_label("Model", exact=True).select_option("random_forest")
    page.get_by_role("button", name="Get the price").click()

    expect(page.locator("#quote")).to_be_visible()
    expect(page.locator("#quote-table")).to_contain_text("Compute fee")
    page.get_by_role("button", name="Pay from my wallet").click()

    page.wait_for_url("**/runs/*/", timeout=60_000)
    progress = page.get_by_role("progressbar")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=120_000)
    expect(page.get_by_test_id("run-status")).to_have_text("Completed")
    expect(page.get_by_test_id("metrics")).to_contain_text("accuracy")
    expect(page.locator("#quality-chart svg")).to_have_count(1)
    expect(page.locator("#quality-chart table.confusion")).to_have_count(1)
    expect(page.locator("#importance-chart svg rect")).not_to_have_count(0)
    expect(page.locator("#contribution-chart svg rect")).to_have_count(2)
    contributions = page.get_by_test_id("contributions")
    for dataset in cancer_datasets:
        expect(contributions).to_contain_text(dataset.title)
    expect(page.locator("#lineage")).to_contain_text("Settlement transaction")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the model (skops)").click()
    path = tmp_path / "model.skops"
    download_info.value.save_as(path)

    data = path.read_bytes()
    model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    predictions = model.predict(frame.drop(columns="target").head(20))
    assert set(predictions) <= {0, 1}
    assert (predictions == frame["target"].head(20)).mean() > 0.6


def test_the_pay_step_appears_only_with_a_price(page, live_server, cancer_datasets):
    sign_in_with_dev_wallet(page, live_server.url, 4)
    page.goto(live_server.url + "/commission/")

    expect(page.get_by_role("button", name="Pay from my wallet")).to_be_hidden()
    page.get_by_role("checkbox", name=cancer_datasets[0].title).check()
    page.get_by_label("Target column (what the model predicts)").fill("no_such_column")
    page.get_by_role("button", name="Get the price").click()

    expect(page.locator("#commission-message")).to_contain_text(
        "The target column 'no_such_column'"
    )
    expect(page.get_by_role("button", name="Pay from my wallet")).to_be_hidden()
