"""DID documents resolved from the identity registry's events, on a real anvil."""

import base64
import os

import pytest
from eth_account import Account
from rest_framework.test import APIClient
from web3 import Web3

from chain.client import get_web3
from chain.indexer import chain_index_catch_up
from chain.wrappers import IdentityRegistry
from marketplace.models import DidEvent, User

pytestmark = pytest.mark.django_db


def fresh_identity(w3: Web3) -> str:
    """A new funded account that anvil signs for, so each test has an untouched identity."""
    account = Account.create()
    w3.provider.make_request("anvil_impersonateAccount", [account.address])
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**19)])
    return account.address


def send(w3: Web3, sender: str, tx) -> dict:
    tx_hash = w3.eth.send_transaction({"from": sender, "to": tx.to, "data": tx.data})
    return w3.eth.wait_for_transaction_receipt(tx_hash)


def resolve(did: str):
    return APIClient().get(f"/api/dids/{did}")


def test_an_identity_without_events_resolves_to_its_controller(contracts):
    address = fresh_identity(get_web3())
    did = f"did:ethr:0x7a69:{address}"

    response = resolve(did)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/did+ld+json"
    document = response.json()
    assert document["id"] == did
    assert document["verificationMethod"] == [
        {
            "id": f"{did}#controller",
            "type": "EcdsaSecp256k1RecoveryMethod2020",
            "controller": did,
            "blockchainAccountId": f"eip155:31337:{address}",
        }
    ]
    assert document["authentication"] == [f"{did}#controller"]
    assert "service" not in document


def test_published_service_and_key_appear_and_revocation_removes_them(contracts):
    w3 = get_web3()
    registry = IdentityRegistry.deployed(w3)
    address = fresh_identity(w3)
    did = f"did:ethr:0x7a69:{address}"
    key = os.urandom(32)
    name = b"did/svc/MarketplaceProfile"
    send(w3, address, registry.set_attribute_request(address, name, b"https://m.example/p/1", 3600))
    send(
        w3,
        address,
        registry.set_attribute_request(address, b"did/pub/X25519/enc/base64", key, 3600),
    )

    document = resolve(did).json()

    assert document["service"] == [
        {
            "id": f"{did}#service-1",
            "type": "MarketplaceProfile",
            "serviceEndpoint": "https://m.example/p/1",
        }
    ]
    key_method = document["verificationMethod"][1]
    assert key_method["type"] == "X25519KeyAgreementKey2019"
    assert key_method["publicKeyBase64"] == base64.b64encode(key).decode()
    assert document["keyAgreement"] == [key_method["id"]]

    revoke = registry.contract.encode_abi(
        "revokeAttribute", args=[address, name.ljust(32, b"\0"), b"https://m.example/p/1"]
    )
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": address, "to": registry.address, "data": revoke})
    )

    assert "service" not in resolve(did).json()


def test_the_walk_stores_each_event_once_and_only_walks_new_blocks(contracts):
    w3 = get_web3()
    registry = IdentityRegistry.deployed(w3)
    address = fresh_identity(w3)
    did = f"did:ethr:0x7a69:{address}"
    send(
        w3,
        address,
        registry.set_attribute_request(address, b"did/svc/A", b"https://a.example", 3600),
    )
    send(
        w3,
        address,
        registry.set_attribute_request(address, b"did/svc/B", b"https://b.example", 3600),
    )

    resolve(did)
    resolve(did)
    assert DidEvent.objects.filter(identity=address).count() == 2

    send(
        w3,
        address,
        registry.set_attribute_request(address, b"did/svc/C", b"https://c.example", 3600),
    )
    services = [s["type"] for s in resolve(did).json()["service"]]

    assert services == ["A", "B", "C"]
    assert DidEvent.objects.filter(identity=address).count() == 3


def test_the_indexer_records_did_events_that_the_resolver_then_uses(contracts):
    w3 = get_web3()
    registry = IdentityRegistry.deployed(w3)
    address = fresh_identity(w3)
    receipt = send(
        w3,
        address,
        registry.set_attribute_request(address, b"did/svc/X", b"https://x.example", 3600),
    )

    chain_index_catch_up(w3=w3)

    stored = DidEvent.objects.get(identity=address)
    assert stored.tx_hash == receipt["transactionHash"].to_0x_hex()
    assert stored.block_number == receipt["blockNumber"]
    chain_index_catch_up(w3=w3)  # a second pass changes nothing
    assert DidEvent.objects.filter(identity=address).count() == 1
    assert resolve(f"did:ethr:0x7a69:{address}").json()["service"][0]["type"] == "X"


def test_delegates_and_owner_changes_are_reflected(contracts):
    w3 = get_web3()
    registry = IdentityRegistry.deployed(w3)
    address, delegate, new_owner = fresh_identity(w3), Account.create().address, fresh_identity(w3)
    did = f"did:ethr:0x7a69:{address}"
    add = registry.contract.encode_abi(
        "addDelegate", args=[address, b"sigAuth".ljust(32, b"\0"), delegate, 3600]
    )
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": address, "to": registry.address, "data": add})
    )

    document = resolve(did).json()
    assert document["verificationMethod"][1]["blockchainAccountId"] == f"eip155:31337:{delegate}"
    assert document["verificationMethod"][1]["id"] in document["authentication"]

    change = registry.contract.encode_abi("changeOwner", args=[address, new_owner])
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": address, "to": registry.address, "data": change})
    )
    document = resolve(did).json()
    assert document["verificationMethod"][0]["blockchainAccountId"] == f"eip155:31337:{new_owner}"


@pytest.mark.parametrize(
    ("did", "status", "code"),
    [
        ("did:web:example.org", 400, "invalid_did"),
        ("did:ethr:0x7a69:0x1234", 400, "invalid_did"),
        ("did:ethr:mainnet:0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 400, "invalid_did"),
        ("did:ethr:0x1:0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 404, "unsupported_network"),
    ],
)
def test_bad_dids_get_a_reason(did, status, code, contracts):
    response = resolve(did)

    assert response.status_code == status
    assert response.json()["extra"]["code"] == code


def test_attribute_request_is_the_setattribute_call_for_the_users_own_wallet(contracts):
    user = User.objects.create(username="u", address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    api = APIClient()
    api.force_authenticate(user)

    response = api.post(
        "/api/me/did-attributes", {"kind": "service", "value": "https://m.example/u"}, format="json"
    )

    assert response.status_code == 200
    tx = response.json()
    registry = IdentityRegistry.deployed()
    assert tx["to"] == registry.address and tx["chain_id"] == 31337 and tx["value_wei"] == "0"
    function, args = registry.contract.decode_function_input(tx["data"])
    assert function.fn_name == "setAttribute"
    assert args["identity"] == user.address
    assert args["value"] == b"https://m.example/u"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "service", "value": "ftp://x"}, "The service endpoint must be an http(s) URL."),
        (
            {"kind": "service", "value": "https://m.example/#\x1e"},
            "The service endpoint must be an http(s) URL.",
        ),
        ({"kind": "encryption_key", "value": "c2hvcnQ="}, "The encryption key must be an X25519"),
        ({"kind": "nickname", "value": "x"}, "The request is not valid."),
    ],
)
def test_bad_attribute_requests_are_refused(body, message, contracts):
    user = User.objects.create(username="u", address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    api = APIClient()
    api.force_authenticate(user)

    response = api.post("/api/me/did-attributes", body, format="json")

    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


def test_attribute_request_needs_a_signed_in_user(contracts):
    response = APIClient().post(
        "/api/me/did-attributes", {"kind": "service", "value": "https://x.example"}, format="json"
    )
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_beat_scheduled_indexer_task_runs_on_a_real_worker(contracts, celery_worker):
    import time

    from chain.tasks import index_chain

    w3 = get_web3()
    registry = IdentityRegistry.deployed(w3)
    address = fresh_identity(w3)
    send(
        w3, address, registry.set_attribute_request(address, b"did/svc/W", b"https://w.example", 60)
    )

    index_chain.delay()

    deadline = time.monotonic() + 30
    while not DidEvent.objects.filter(identity=address).exists():
        assert time.monotonic() < deadline, "the worker did not index the event"
        time.sleep(0.2)
    assert DidEvent.objects.get(identity=address).kind == "DIDAttributeChanged"
