"""Attacks on the browser, in real Chromium: a script smuggled through the sign-in page's `next`,
an off-site redirect after sign-in, and another site signing the visitor in (login CSRF)."""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from marketplace import services
from marketplace.devstack import free_port
from tests.e2e.conftest import DEV_ACCOUNTS
from tests.marketplace.siwe_helpers import MALLORY, MALLORY_KEY, sign, siwe_text

pytestmark = pytest.mark.e2e

# Another site: a loopback address other than the marketplace's is another origin and another site.
ATTACKER_HOST = "127.0.0.2"


@pytest.fixture
def attacker_site():
    """A web server on another origin that serves whatever page the test gives it."""
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "<p>attacker</p>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((ATTACKER_HOST, free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.pages = pages
    server.url = f"http://{ATTACKER_HOST}:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def sign_in_through(page, url: str, account: str) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(url)
    page.get_by_test_id("dev-account").select_option(account)
    page.get_by_role("button", name="Sign in with the dev wallet").click()


def test_a_script_in_next_does_not_run_after_sign_in(page, live_server, contracts):
    scripts_blocked = []
    page.on("console", lambda m: scripts_blocked.append(m.text) if "Refused" in m.text else None)

    sign_in_through(
        page,
        live_server.url + "/signin/?next=javascript:window.pwned=document.cookie",
        DEV_ACCOUNTS[1],
    )

    page.wait_for_url(live_server.url + "/profile/")
    assert page.evaluate("window.pwned") is None
    expect(page.get_by_test_id("profile-did")).to_contain_text(DEV_ACCOUNTS[1])
    assert scripts_blocked == []  # every script of the pages ran under the policy


@pytest.mark.parametrize("target", ["{attacker}/collect", "//{host}/collect", "/\\{host}/collect"])
def test_an_off_site_next_lands_on_the_profile(page, live_server, contracts, attacker_site, target):
    target = target.format(
        attacker=attacker_site.url, host=f"{ATTACKER_HOST}:{attacker_site.server_address[1]}"
    )

    sign_in_through(page, f"{live_server.url}/signin/?next={target}", DEV_ACCOUNTS[2])

    page.wait_for_url(live_server.url + "/profile/")
    expect(page.get_by_test_id("profile-did")).to_contain_text(DEV_ACCOUNTS[2])


def test_a_signed_in_visitor_is_not_sent_off_site_by_next(
    page, live_server, contracts, attacker_site
):
    sign_in_through(page, live_server.url + "/signin/", DEV_ACCOUNTS[3])
    page.wait_for_url(live_server.url + "/profile/")

    page.goto(f"{live_server.url}/signin/?next={attacker_site.url}/collect")

    assert page.url == live_server.url + "/profile/"


def test_another_site_cannot_sign_the_visitor_in_as_the_attacker(
    page, live_server, contracts, attacker_site
):
    """Mallory signs a sign-in message for the marketplace with her own key; her page makes the
    visitor's browser post it with session=true."""
    text = siwe_text(
        nonce=services.login_nonce_issue(),
        address=MALLORY,
        domain=live_server.url.split("://", 1)[1],
        uri=live_server.url,
    )
    fields = {"message": text, "signature": sign(text, MALLORY_KEY), "session": "true"}
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    attacker_site.pages["/win"] = (
        f'<form id="f" method="post" action="{live_server.url}/api/auth/login">{inputs}</form>'
        '<script>document.getElementById("f").submit()</script>'
    )

    with page.expect_response(f"{live_server.url}/api/auth/login") as answer:
        page.goto(attacker_site.url + "/win")
    assert answer.value.status in (403, 415)

    page.goto(live_server.url + "/profile/")
    assert "/signin/" in page.url  # still signed out: not Mallory
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()


def test_pages_carry_the_security_headers(page, live_server, db):
    response = page.goto(live_server.url + "/")

    headers = response.headers
    policy = headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
