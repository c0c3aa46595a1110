import pytest
import skops.io as sio
from playwright.sync_api import expect
from sklearn.datasets import load_breast_cancer

from marketplace.money import wei_to_eth
from tests.e2e.conftest import sign_in_with_dev_wallet
from training.lineage import model_fingerprint_matches
from training.models import TrainingRun

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
    page.get_by_label("Leave harmful rows out (curation)").check()
    page.get_by_role("button", name="Get the price").click()

    expect(page.locator("#quote")).to_be_visible()
    expect(page.get_by_test_id("quote-curate")).to_contain_text("harmful are left out")
    quote = page.get_by_test_id("quote-table")
    for dataset in cancer_datasets:  # each row named by its dataset, priced in ETH
        row = quote.get_by_role("row").filter(has_text=f"{dataset.title} #{dataset.pk}")
        expect(row.locator(".amount")).to_have_text("0.02 ETH")
        expect(row.locator(".amount")).to_have_attribute("title", "20000000000000000 wei")
    expect(quote).to_contain_text("Compute fee")
    page.get_by_role("button", name="Pay from my wallet").click()

    page.wait_for_url("**/runs/*/", timeout=60_000)
    run = TrainingRun.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    progress = page.get_by_role("progressbar")
    expect(progress).to_have_attribute("aria-valuenow", "100", timeout=120_000)
    expect(page.get_by_test_id("run-status")).to_have_text("Completed")
    expect(page.get_by_test_id("metrics")).to_contain_text("accuracy")
    expect(page.locator("#quality-chart svg")).to_have_count(1)
    expect(page.locator("#quality-chart table.confusion")).to_have_count(1)
    expect(page.locator("#importance-chart svg rect")).not_to_have_count(0)
    expect(page.locator("#contribution-chart svg rect")).to_have_count(2)
    run.refresh_from_db()
    funded = page.get_by_test_id("run-funded").locator(".amount")
    expect(funded).to_have_text(f"{wei_to_eth(run.funded_value_wei)} ETH")
    expect(funded).to_have_attribute("title", f"{run.funded_value_wei} wei")
    assert run.funded_value_wei == run.price_wei
    contributions = page.get_by_test_id("contributions")
    for entry in run.inputs.select_related("dataset"):
        name = f"{entry.dataset.title} #{entry.dataset_id}"
        expect(page.locator("#contribution-chart .chart-label", has_text=name)).to_have_count(1)
        paid = contributions.get_by_role("row").filter(has_text=name).locator(".amount").last
        expect(paid).to_have_text(f"{wei_to_eth(entry.amount_wei)} ETH")
        expect(paid).to_have_attribute("title", f"{entry.amount_wei} wei")
    expect(page.locator("#lineage")).to_contain_text("Settlement transaction")
    expect(page.locator("#lineage")).to_contain_text(run.report["model_fingerprint"])

    # Who attested what: the validators that re-computed the run, their signatures of its report.
    attestation = page.get_by_test_id("attestation")
    expect(attestation).to_be_visible()
    expect(page.get_by_test_id("attestation-summary")).to_contain_text("2 are needed")
    attested = page.get_by_test_id("attestation-row").filter(has_text="Attested")
    expect(attested).not_to_have_count(0)
    assert attested.count() >= 2
    for signed in run.attestation_round.requests.filter(status="attested"):
        row = page.get_by_test_id("attestation-row").filter(has_text=signed.validator.address)
        expect(row).to_contain_text(run.report_hash)

    # Curation: per dataset, how many rows were left out (counts only) and why each was paid so.
    expect(page.get_by_test_id("run-curate")).to_have_text("harmful rows left out of the model")
    explanations = page.get_by_test_id("payout-explanations")
    for entry in run.inputs.select_related("dataset"):
        name = f"{entry.dataset.title} #{entry.dataset_id}"
        row = contributions.get_by_role("row").filter(has_text=name)
        expect(row.get_by_test_id("excluded-rows")).to_have_text(str(entry.excluded_rows))
        sentence = explanations.get_by_role("listitem").filter(has_text=f"“{entry.dataset.title}”")
        expect(sentence).to_contain_text(
            f"“{entry.dataset.title}” earned {wei_to_eth(entry.amount_wei)} ETH: "
        )
        expect(sentence).to_contain_text("of the half split by price")
    noisy = run.inputs.get(dataset=cancer_datasets[1])
    assert noisy.excluded_rows > 0  # its shuffled labels: about half its training rows
    expect(explanations.get_by_role("listitem").filter(has_text="Cancer noisy")).to_contain_text(
        f"{noisy.excluded_rows} of its rows were left out of the model as harmful"
    )

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the model (skops)").click()
    path = tmp_path / "model.skops"
    download_info.value.save_as(path)

    data = path.read_bytes()
    assert model_fingerprint_matches(data, run.report)  # the model the settled report names
    model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    predictions = model.predict(frame.drop(columns="target").head(20))
    assert set(predictions) <= {0, 1}
    assert (predictions == frame["target"].head(20)).mean() > 0.6

    # The validators' page, from the run's.
    page.get_by_role("link", name="About validators").click()
    expect(page.get_by_test_id("validator-row")).not_to_have_count(0)
    expect(page.get_by_role("heading", name="Run a validator")).to_be_visible()


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
