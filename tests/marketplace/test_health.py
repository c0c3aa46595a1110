"""/healthz and the status page, against the real nodes, and with parts of the stack down."""

import pytest

from marketplace.devstack import free_port


@pytest.fixture
def whole_stack(celery_worker, ipfs_node, contracts):
    return contracts


def test_healthz_is_green_when_every_part_answers(client, whole_stack, anvil):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    parts = body["parts"]
    assert set(parts) == {"database", "redis", "celery", "chain", "ipfs", "contracts"}
    assert all(part["ok"] for part in parts.values()), parts
    assert parts["chain"]["figures"]["chain_id"] == 31337
    assert isinstance(parts["chain"]["figures"]["latest_block"], int)
    assert parts["celery"]["figures"]["workers"] >= 1
    assert parts["ipfs"]["figures"]["version"]
    assert parts["contracts"]["figures"]["addresses"] == whole_stack


def test_healthz_names_the_chain_as_down_when_it_does_not_answer(client, settings, whole_stack):
    settings.CHAIN_RPC_URL = f"http://127.0.0.1:{free_port()}"

    response = client.get("/healthz")

    assert response.status_code == 503
    parts = response.json()["parts"]
    assert parts["chain"]["ok"] is False
    assert "does not answer" in parts["chain"]["error"]
    assert parts["ipfs"]["ok"] is True
    assert parts["database"]["ok"] is True


def test_healthz_names_ipfs_as_down_when_it_does_not_answer(client, settings, whole_stack):
    settings.IPFS_API_URL = f"http://127.0.0.1:{free_port()}"

    response = client.get("/healthz")

    assert response.status_code == 503
    parts = response.json()["parts"]
    assert parts["ipfs"]["ok"] is False
    assert parts["ipfs"]["error"]
    assert parts["chain"]["ok"] is True


def test_healthz_names_redis_as_down_when_it_does_not_answer(client, settings, whole_stack):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["parts"]["redis"]["ok"] is False


def test_healthz_reports_contracts_missing_on_a_chain_without_them(client, db, anvil, ipfs_node):
    response = client.get("/healthz")

    assert response.status_code == 503
    contracts = response.json()["parts"]["contracts"]
    assert contracts["ok"] is False
    assert "not deployed on chain 31337" in contracts["error"]


def test_status_page_renders_and_marks_the_down_part(client, settings, whole_stack):
    settings.IPFS_API_URL = f"http://127.0.0.1:{free_port()}"

    response = client.get("/status")

    assert response.status_code == 503
    html = response.content.decode()
    assert "Some parts are down." in html
    assert 'data-part="ipfs"' in html
    assert "Traceback" not in html


def test_home_page_says_what_the_marketplace_is(client, db, settings):
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Browse datasets" in html
    for label in ("Datasets", "Commission a model", "Earnings", "Sign in"):
        assert label in html
    # It says what leaves the workers, with the threshold the workers apply.
    text = " ".join(html.split())
    assert "What leaves the workers" in text
    assert f"figures over at least {settings.PRIVACY_MIN_GROUP_ROWS} rows" in text
    assert "can still memorise" in text


def test_health_publishes_no_node_address_or_credential(client, settings, whole_stack):
    """Provider URLs carry API keys: neither /healthz nor the status page shows them, up or down."""
    secret = "k3y-0f-the-pr0vider"
    settings.HEALTH_CACHE_SECONDS = 0  # the figures of each request, up then down
    settings.CHAIN_PUBLIC_RPC_URL = "http://127.0.0.1:8545"  # what the dev wallet in a page calls
    up = client.get("/healthz").content.decode() + client.get("/status").content.decode()
    settings.IPFS_API_URL = f"http://127.0.0.1:{free_port()}/{secret}"
    settings.CHAIN_RPC_URL = f"http://user:{secret}@127.0.0.1:{free_port()}/v3/{secret}"

    down = client.get("/healthz")
    page = client.get("/status")

    assert down.status_code == 503
    assert down.json()["parts"]["chain"]["ok"] is False
    for text in (up, down.content.decode(), page.content.decode()):
        assert secret not in text
    assert "127.0.0.1:" not in down.content.decode()
