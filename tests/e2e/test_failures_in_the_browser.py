"""What a person sees in Chromium when something fails: a readable page when a node is down, and
a failed run that says what failed and where the refund went."""

from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from datasets.models import Dataset
from tests.datasets.factories import measurements_csv
from tests.e2e.conftest import sign_in_with_dev_wallet
from tests.marketplace.test_outages import closed_url, redis_down  # noqa: F401 - fixtures
from tests.training.conftest import commission_and_pay, wait_for_run
from training.models import TrainingRun
from training.services import training_run_refund
from training.tasks import run_training

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_upload_while_the_queue_is_down_shows_a_readable_page_and_keeps_nothing(
    signed_in_page,
    live_server,
    settings,
    closed_url,  # noqa: F811
):
    page = signed_in_page
    page.goto(live_server.url + "/datasets/new/")
    page.get_by_label("File").set_input_files(
        files=[{"name": "lakes.csv", "mimeType": "text/csv", "buffer": measurements_csv(seed=98)}]
    )
    page.get_by_label("Title").fill("Lake flowers")
    page.get_by_label("License").select_option("CC-BY-4.0")
    page.get_by_label("Price (ETH)").fill("0.01")

    with contextmanager(redis_down.__wrapped__)(settings, closed_url):
        page.get_by_role("button", name="Upload and check").click()
        expect(page.get_by_role("heading", name="Temporarily unavailable")).to_be_visible()

    expect(page.locator("body")).to_contain_text("The task queue (Redis) is not answering")
    assert not Dataset.objects.exists()


def test_a_failed_run_says_what_failed_and_shows_the_refund(
    page, live_server, buyer_api, cancer_datasets
):
    run = commission_and_pay(buyer_api, cancer_datasets)
    Dataset.objects.filter(pk=cancer_datasets[0].pk).update(wrapped_data_key=b"\0" * 60)
    run_training.apply(args=[run.pk])  # the task body, as the worker runs it
    # A session worker, if one is running, may have taken the run first: either way it fails.
    wait_for_run(run.pk, TrainingRun.Status.REFUNDING, TrainingRun.Status.FAILED)
    training_run_refund(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED

    sign_in_with_dev_wallet(page, live_server.url, 4)  # the buyer
    page.goto(f"{live_server.url}/runs/{run.pk}/")

    expect(page.get_by_test_id("run-status")).to_have_text("Failed")
    error = page.locator("#run-error")
    expect(error).to_contain_text("while fetching and decrypting the datasets")
    expect(error).to_contain_text(f"refunded to your wallet (transaction {run.refund_tx})")
