"""A reorganisation deeper than the confirmation depth: the indexer sees that a block it
processed was replaced, forgets what it recorded from the orphaned blocks, and reads the new
chain's blocks instead."""

from __future__ import annotations

import pytest

from chain.indexer import chain_index_catch_up
from chain.models import IndexerCursor
from chain.wrappers import DatasetRegistry, IdentityRegistry
from datasets.models import Dataset
from marketplace.models import DidEvent
from marketplace.services import user_for_address
from tests.chain.conftest import mine
from tests.chain.test_indexer import list_with_raw_cid, publish
from tests.datasets.factories import listed_dataset
from tests.marketplace.test_did import fresh_identity

pytestmark = pytest.mark.django_db


def block_hash(w3, number: int) -> str:
    return w3.eth.get_block(number)["hash"].to_0x_hex()


@pytest.mark.parametrize("blocks_after", [12, 1], ids=["longer new chain", "shorter new chain"])
def test_events_of_replaced_blocks_are_forgotten_and_the_new_chains_recorded(
    chain_restored, settings, blocks_after
):
    assert settings.CHAIN_CONFIRMATIONS == 0  # any replaced block is deeper than the depth
    w3 = chain_restored
    identities = IdentityRegistry.deployed(w3)
    registry = DatasetRegistry.deployed(w3)
    chain_index_catch_up(w3=w3)
    fork = w3.provider.make_request("evm_snapshot", [])["result"]

    # The history that will be replaced: a DID attribute and a listing of ours, seen by the
    # indexer a few blocks deep.
    orphan, lister = fresh_identity(w3), fresh_identity(w3)
    orphaned = publish(w3, identities, orphan, b"https://orphaned.example")
    listed = list_with_raw_cid(w3, registry.address, lister, b"bafkreiorphaned")
    (event,) = registry.contract.events.DatasetListed().process_receipt(listed)
    dataset = listed_dataset(
        owner=user_for_address(address=lister), cid="bafkreiorphaned", content_sha256="01" * 32,
        listing_id=event["args"]["listingId"],
    )  # fmt: skip
    mine(w3, 5)
    chain_index_catch_up(w3=w3)
    assert DidEvent.objects.filter(identity=orphan).exists()
    assert Dataset.objects.get(pk=dataset.pk).confirmed_block == listed["blockNumber"]
    replaced = IndexerCursor.objects.get()
    assert replaced.last_block_hash == block_hash(w3, replaced.last_block)

    # Another history from the fork: neither transaction is in it, another identity's is.
    assert w3.provider.make_request("evm_revert", [fork])["result"] is True
    kept = fresh_identity(w3)
    recorded = publish(w3, identities, kept, b"https://kept.example")
    mine(w3, blocks_after)
    assert recorded["blockNumber"] <= orphaned["blockNumber"]  # the same heights, other blocks
    assert w3.eth.get_block(orphaned["blockNumber"])["hash"] != orphaned["blockHash"]

    chain_index_catch_up(w3=w3)

    assert not DidEvent.objects.filter(identity=orphan).exists()
    assert DidEvent.objects.get(identity=kept).tx_hash == recorded["transactionHash"].to_0x_hex()
    assert Dataset.objects.get(pk=dataset.pk).confirmed_block is None
    cursor = IndexerCursor.objects.get()
    assert cursor.last_block == w3.eth.block_number
    assert cursor.last_block_hash == block_hash(w3, cursor.last_block)
    assert all(block_hash(w3, n) == h for n, h in cursor.block_hashes)


def test_records_of_blocks_still_on_the_chain_are_kept(chain_restored):
    """Only the blocks above the last one still on the chain are read again."""
    w3 = chain_restored
    identities = IdentityRegistry.deployed(w3)
    early = fresh_identity(w3)
    publish(w3, identities, early, b"https://early.example")
    chain_index_catch_up(w3=w3)
    early_event = DidEvent.objects.get(identity=early)
    fork = w3.provider.make_request("evm_snapshot", [])["result"]
    mine(w3, 3)
    chain_index_catch_up(w3=w3)
    replaced = IndexerCursor.objects.get()

    assert w3.provider.make_request("evm_revert", [fork])["result"] is True
    w3.provider.make_request("evm_increaseTime", [3600])  # other blocks at the same heights
    mine(w3, 4)
    assert block_hash(w3, replaced.last_block) != replaced.last_block_hash
    chain_index_catch_up(w3=w3)

    assert DidEvent.objects.get(identity=early).pk == early_event.pk
    assert IndexerCursor.objects.get().last_block_hash == block_hash(w3, w3.eth.block_number)
