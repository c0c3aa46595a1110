import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_home_page_and_status_page(page, live_server, celery_worker, ipfs_node, contracts):
    page.goto(live_server.url + "/")

    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Train models on data you can trust"
    )
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Datasets", "Commission a model", "Earnings", "Sign in"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()

    page.get_by_role("link", name="System status").click()

    expect(page.get_by_test_id("overall")).to_have_text("All parts are answering.")
    for part in ("database", "redis", "celery", "chain", "ipfs", "contracts"):
        expect(page.locator(f'tr[data-part="{part}"] .badge')).to_have_text("up")
    expect(page.locator('tr[data-part="contracts"]')).to_contain_text(contracts["TrainingEscrow"])
    expect(page.locator('tr[data-part="chain"]')).to_contain_text("31337")
