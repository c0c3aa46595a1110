"""Real Chromium, driven by Playwright (Debian's /usr/bin/chromium; no browser download)."""

import os
import shutil

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is not installed: run `make test` (it installs Debian's chromium)")
    # Django's ORM refuses to run inside the event loop Playwright's sync API keeps in this thread.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


# anvil's dev accounts, in the order the dev wallet's account picker lists them.
DEV_ACCOUNTS = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
]


def sign_in_with_dev_wallet(page, base_url: str, account_index: int = 1) -> str:
    """Sign in through the sign-in page with the dev wallet; returns the account's address.
    Confirmation prompts of the dev wallet are accepted (the user says yes)."""
    from playwright.sync_api import expect

    address = DEV_ACCOUNTS[account_index]
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(base_url + "/signin/")
    picker = page.get_by_test_id("dev-account")
    expect(picker.locator(f'option[value="{address}"]')).to_have_count(1)
    picker.select_option(address)
    page.get_by_role("button", name="Sign in with the dev wallet").click()
    page.wait_for_url("**/profile/")
    return address


@pytest.fixture
def signed_in_page(page, live_server, contracts):
    """A page signed in through the dev wallet as anvil dev account 1."""
    sign_in_with_dev_wallet(page, live_server.url, 1)
    return page


from tests.training.conftest import buyer, buyer_api, cancer_datasets  # noqa: E402,F401
from tests.training.test_earnings import completed_run  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _public_origin_is_the_live_server(request, settings):
    """The browser opens the live server, so that is the origin its sign-in messages name."""
    if "live_server" in request.fixturenames:
        settings.PUBLIC_ORIGIN = request.getfixturevalue("live_server").url
