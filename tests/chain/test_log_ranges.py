"""Log reads against a provider that caps eth_getLogs ranges, as public RPC providers do."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from web3 import Web3
from web3.exceptions import Web3RPCError

from chain.client import OutageAwareHTTPProvider
from chain.events import logs_between
from chain.indexer import chain_index_catch_up
from chain.models import Deployment, IndexerCursor
from chain.wrappers import DatasetRegistry, IdentityRegistry, TrainingEscrow
from marketplace.models import DidEvent
from tests.chain.conftest import mine, wallet_send
from tests.chain.test_indexer import list_with_raw_cid, publish
from tests.marketplace.test_did import fresh_identity
from training.compute import funded_job

pytestmark = pytest.mark.django_db

CAP = 100  # blocks per eth_getLogs the provider serves (settings.CHAIN_LOG_RANGE_BLOCKS: 2000)


class CappedProvider(OutageAwareHTTPProvider):
    """A provider that refuses an eth_getLogs over more than `cap` blocks with the error a public
    provider gives, or refuses every eth_getLogs with `error` when set."""

    def __init__(self, url: str, *, cap: int, error: str = ""):
        super().__init__(url)
        self.cap = cap
        self.error = error
        self.refused: list[tuple[int, int]] = []
        self.served: list[tuple[int, int]] = []

    def _number(self, block) -> int:
        if block in (None, "latest", "pending", "safe", "finalized"):
            return int(super().make_request("eth_blockNumber", [])["result"], 16)
        return 0 if block == "earliest" else int(block, 16)

    def make_request(self, method, params):
        if method == "eth_getLogs":
            query = params[0]
            start, end = self._number(query.get("fromBlock")), self._number(query.get("toBlock"))
            if self.error or end - start + 1 > self.cap:
                self.refused.append((start, end))
                message = self.error or f"query exceeds max block range {self.cap}"
                return {"jsonrpc": "2.0", "id": 0, "error": {"code": -32005, "message": message}}
            self.served.append((start, end))
        return super().make_request(method, params)


def capped_web3(**kwargs) -> Web3:
    return Web3(CappedProvider(settings.CHAIN_RPC_URL, **kwargs))


def test_events_far_apart_are_found_through_a_provider_that_caps_log_ranges(chain_restored):
    w3 = chain_restored
    registry, escrow = DatasetRegistry.deployed(w3), TrainingEscrow.deployed(w3)
    identities = IdentityRegistry.deployed(w3)
    lister, buyer, publisher = (fresh_identity(w3) for _ in range(3))
    mine(w3, 3 * CAP)
    listed = list_with_raw_cid(w3, registry.address, lister, b"bafkreifaraway")
    (event,) = registry.contract.events.DatasetListed().process_receipt(listed)
    listing_id = event["args"]["listingId"]
    mine(w3, 3 * CAP)
    job_id = os.urandom(32)
    funded = wallet_send(w3, buyer, escrow.fund_request(job_id, [listing_id]))
    assert funded["status"] == 1
    mine(w3, 3 * CAP)
    published = publish(w3, identities, publisher, b"https://far.example")
    mine(w3, 3 * CAP)

    capped = capped_web3(cap=CAP)
    # The provider really refuses what one unbounded read asks for.
    with pytest.raises(Web3RPCError, match="max block range"):
        capped.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": registry.address})

    found = DatasetRegistry.deployed(capped).listed_event(listing_id)
    assert found is not None
    assert found.args["cid"] == "bafkreifaraway"
    assert found.tx_hash == listed["transactionHash"].to_0x_hex()

    events = TrainingEscrow.deployed(capped).job_events(job_id)
    assert [e.name for e in events] == ["JobFunded"]
    assert events[0].block_number == funded["blockNumber"]
    terms, block = funded_job(TrainingEscrow.deployed(capped), job_id=job_id, buyer=buyer)
    assert (terms.dataset_ids, block) == ((listing_id,), funded["blockNumber"])

    newest = logs_between(
        capped, event=DatasetRegistry.deployed(capped).contract.events.DatasetListed,
        argument_filters={"listingId": listing_id}, from_block=0, first_only=True,
        newest_first=True,
    )  # fmt: skip
    assert [log["blockNumber"] for log in newest] == [listed["blockNumber"]]

    chain_index_catch_up(w3=capped)
    assert DidEvent.objects.get(identity=publisher).block_number == published["blockNumber"]
    assert IndexerCursor.objects.get().last_block == w3.eth.block_number

    provider = capped.provider
    assert provider.refused, "the reads asked for more than the cap and were halved"
    assert provider.served
    assert all(end - start < CAP for start, end in provider.served)


def test_a_configured_range_within_the_cap_is_never_refused(chain_restored, settings):
    settings.CHAIN_LOG_RANGE_BLOCKS = CAP
    w3 = chain_restored
    registry = DatasetRegistry.deployed(w3)
    lister = fresh_identity(w3)
    mine(w3, 2 * CAP)
    listed = list_with_raw_cid(w3, registry.address, lister, b"bafkreiwithincap")
    (event,) = registry.contract.events.DatasetListed().process_receipt(listed)
    mine(w3, 2 * CAP)

    capped = capped_web3(cap=CAP)
    start = Deployment.objects.get(contract="DatasetRegistry").block_number
    found = DatasetRegistry.deployed(capped).listed_event(event["args"]["listingId"])

    assert found is not None and found.block_number == listed["blockNumber"]
    assert capped.provider.refused == []
    # It stopped at the listing's range instead of reading on to the head.
    assert capped.provider.served[0][0] == start
    assert capped.provider.served[-1][1] < listed["blockNumber"] + CAP


def test_an_error_that_is_not_about_the_range_is_raised_at_once(chain_restored):
    capped = capped_web3(cap=10**9, error="header not found")

    with pytest.raises(Web3RPCError, match="header not found"):
        DatasetRegistry.deployed(capped).listed_event(1)
    assert len(capped.provider.refused) == 1
