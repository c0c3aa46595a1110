import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import DEV_ACCOUNTS, sign_in_with_dev_wallet

pytestmark = pytest.mark.e2e


def test_sign_in_see_the_did_and_publish_a_service_endpoint(page, live_server, contracts):
    address = sign_in_with_dev_wallet(page, live_server.url, 2)
    did = f"did:ethr:0x7a69:{address}"

    expect(page.get_by_test_id("profile-did")).to_have_text(did)
    expect(page.get_by_test_id("nav-did")).to_have_attribute("title", did)
    document = page.get_by_test_id("did-document")
    expect(document).to_contain_text(f'"id": "{did}"')
    expect(document).not_to_contain_text("MarketplaceProfile")

    endpoint = page.get_by_label("Service endpoint (your marketplace profile)")
    expect(endpoint).to_have_value(f"{live_server.url}/profiles/{address}/")
    page.get_by_role("button", name="Publish service endpoint").click()

    expect(page.locator("#publish-message")).to_have_text(
        "Published. Your DID document now includes it.", timeout=30_000
    )
    expect(document).to_contain_text('"type": "MarketplaceProfile"')
    expect(document).to_contain_text(f'"serviceEndpoint": "{live_server.url}/profiles/{address}/"')


def test_rejecting_the_signature_explains_and_keeps_you_signed_out(page, live_server, contracts):
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(live_server.url + "/signin/")
    page.get_by_test_id("dev-account").select_option(DEV_ACCOUNTS[3])

    page.get_by_role("button", name="Sign in with the dev wallet").click()

    expect(page.locator("#signin-message")).to_have_text("You rejected the request in your wallet.")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()


def test_without_a_browser_wallet_the_page_says_so(page, live_server, contracts):
    page.goto(live_server.url + "/signin/")

    expect(page.locator("#browser-wallet-state")).to_contain_text(
        "No wallet was found in this browser"
    )
    expect(page.get_by_role("button", name="Sign in with my wallet")).to_be_disabled()


def test_profile_needs_sign_in(page, live_server, db):
    page.goto(live_server.url + "/profile/")

    expect(page).to_have_url(f"{live_server.url}/signin/?next=/profile/")


def test_sign_out(signed_in_page, live_server):
    signed_in_page.get_by_role("button", name="Sign out").click()

    expect(signed_in_page.get_by_role("link", name="Sign in")).to_be_visible()
    signed_in_page.goto(live_server.url + "/profile/")
    expect(signed_in_page).to_have_url(f"{live_server.url}/signin/?next=/profile/")


# A browser wallet on another network (the user's extension is outside the product, so the test
# plays it): it answers eth_chainId with mainnet and refuses to switch to an unknown chain.
MAINNET_WALLET = """
window.ethereum = {
  request: async ({ method }) => {
    if (method === "eth_requestAccounts") return ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"];
    if (method === "eth_chainId") return "0x1";
    if (method === "wallet_switchEthereumChain") {
      const err = new Error("Unrecognized chain ID"); err.code = 4902; throw err;
    }
    throw new Error("unexpected " + method);
  },
};
"""


def test_a_wallet_on_the_wrong_chain_is_offered_a_switch_and_told_why_it_failed(
    page, live_server, contracts
):
    page.add_init_script(MAINNET_WALLET)
    questions = []

    def answer(dialog):
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.goto(live_server.url + "/signin/")

    page.get_by_role("button", name="Sign in with my wallet").click()

    expect(page.locator("#signin-message")).to_have_text(
        "Your wallet does not know chain 31337; add it to your wallet first."
    )
    assert questions == [
        "Your wallet is on chain 1, but this marketplace runs on chain 31337. Switch networks?"
    ]


def test_declining_the_switch_says_which_chain_to_use(page, live_server, contracts):
    page.add_init_script(MAINNET_WALLET)
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(live_server.url + "/signin/")

    page.get_by_role("button", name="Sign in with my wallet").click()

    expect(page.locator("#signin-message")).to_have_text(
        "Your wallet is on chain 1; switch it to chain 31337."
    )
