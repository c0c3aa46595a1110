"""The indexer never stops for one bad log: anyone can emit a log our code cannot take."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from chain.client import get_web3
from chain.indexer import chain_index_catch_up
from chain.models import IndexerCursor, SkippedEvent
from chain.wrappers import DatasetRegistry, IdentityRegistry
from marketplace.models import DidEvent
from tests.marketplace.test_did import fresh_identity, send

pytestmark = pytest.mark.django_db

LIST = keccak(text="list(string,bytes32,bytes32,string,uint256,uint256)")[:4]


def list_with_raw_cid(w3, registry_address: str, sender: str, cid: bytes) -> dict:
    """DatasetRegistry.list() from the sender's own wallet with a CID of any bytes (the ABI
    encodes a string as its bytes; web3 would refuse to encode bytes that are not UTF-8)."""
    arguments = encode(
        ["bytes", "bytes32", "bytes32", "bytes", "uint256", "uint256"],
        [cid, b"\x01" * 32, b"\x02" * 32, b"MIT", 10**15, 0],
    )
    tx_hash = w3.eth.send_transaction(
        {"from": sender, "to": registry_address, "data": "0x" + (LIST + arguments).hex()}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return receipt


def publish(w3, identities: IdentityRegistry, address: str, value: bytes) -> dict:
    return send(w3, address, identities.set_attribute_request(address, b"did/svc/X", value, 3600))


def test_a_listing_with_a_cid_that_is_not_utf8_is_skipped_and_the_events_around_it_indexed(
    contracts,
):
    w3 = get_web3()
    identities = IdentityRegistry.deployed(w3)
    registry = DatasetRegistry.deployed(w3)
    attacker, before, after = (fresh_identity(w3) for _ in range(3))
    chain_index_catch_up(w3=w3)

    publish(w3, identities, before, b"https://before.example")
    bad = list_with_raw_cid(w3, registry.address, attacker, b"\xff\xfe not utf-8 \xc3")
    publish(w3, identities, after, b"https://after.example")
    chain_index_catch_up(w3=w3)

    assert DidEvent.objects.filter(identity=before).count() == 1
    assert DidEvent.objects.filter(identity=after).count() == 1
    skipped = SkippedEvent.objects.get()
    assert skipped.tx_hash == bad["transactionHash"].to_0x_hex()
    assert skipped.block_number == bad["blockNumber"]
    assert skipped.contract == "DatasetRegistry"
    assert "decode" in skipped.reason.lower() or "utf" in skipped.reason.lower()
    cursor = IndexerCursor.objects.get()
    assert cursor.last_block >= w3.eth.block_number

    # The indexer stays healthy: later events are indexed, the bad log is recorded once.
    later = fresh_identity(w3)
    publish(w3, identities, later, b"https://later.example")
    chain_index_catch_up(w3=w3)
    assert DidEvent.objects.filter(identity=later).count() == 1
    assert SkippedEvent.objects.count() == 1


def test_a_listing_by_a_stranger_with_a_valid_cid_is_indexed_without_a_skip(contracts):
    w3 = get_web3()
    registry = DatasetRegistry.deployed(w3)
    stranger = fresh_identity(w3)

    receipt = list_with_raw_cid(w3, registry.address, stranger, b"bafkreistranger")
    chain_index_catch_up(w3=w3)

    assert IndexerCursor.objects.get().last_block >= receipt["blockNumber"]
    assert not SkippedEvent.objects.filter(tx_hash=receipt["transactionHash"].to_0x_hex()).exists()
