"""DatasetRegistry: direct and EIP-712 relayed listing, price changes, delisting, views."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from tests.contracts.conftest import Market, events
from tests.contracts.signing import domain, fresh_account, sign, type_string

CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
CONTENT_HASH = keccak(text="content")
METADATA_HASH = keccak(text="metadata")
LICENSE = "CC-BY-4.0"
PRICE = 10**17
MAX_PRICE = 2**88 - 1
LISTINGS_SLOT = 4  # EIP712 fallback strings (0, 1), Nonces._nonces (2), listingCount (3)


def list_as(market: Market, owner: str, price: int = PRICE, parent_id: int = 0, cid: str = CID):
    return market.registry.functions.list(
        cid, CONTENT_HASH, METADATA_HASH, LICENSE, price, parent_id
    ), owner


def listing_message(owner: str, nonce: int, deadline: int, **overrides) -> dict:
    message = {
        "owner": owner,
        "cid": CID,
        "contentHash": CONTENT_HASH,
        "metadataHash": METADATA_HASH,
        "license": LICENSE,
        "price": PRICE,
        "parentId": 0,
        "nonce": nonce,
        "deadline": deadline,
    }
    message.update(overrides)
    return message


def list_for_call(market: Market, message: dict, signature: bytes):
    return market.registry.functions.listFor(
        message["owner"],
        message["cid"],
        message["contentHash"],
        message["metadataHash"],
        message["license"],
        message["price"],
        message["parentId"],
        message["deadline"],
        signature,
    )


def listing_slot(listing_id: int) -> int:
    return int.from_bytes(keccak(abi_encode(["uint256", "uint256"], [listing_id, LISTINGS_SLOT])))


# --- list


def test_list_stores_one_packed_slot_and_emits_the_details(market: Market):
    alice = market.actors.alice.address
    receipt = market.chain.transact(*list_as(market, alice))

    assert market.registry.functions.listingCount().call() == 1
    assert market.registry.functions.getListing(1).call() == [alice, PRICE, False]
    assert events(market.registry, receipt, "DatasetListed") == [
        {
            "listingId": 1,
            "owner": alice,
            "parentId": 0,
            "cid": CID,
            "contentHash": CONTENT_HASH,
            "metadataHash": METADATA_HASH,
            "license": LICENSE,
            "price": PRICE,
        }
    ]
    # The gas design: owner | price << 160 | delisted << 248 in one slot, nothing in the next.
    w3, slot = market.chain.w3, listing_slot(1)
    word = int.from_bytes(w3.eth.get_storage_at(market.registry.address, slot))
    assert word == int(alice, 16) | PRICE << 160
    assert int.from_bytes(w3.eth.get_storage_at(market.registry.address, slot + 1)) == 0
    assert int.from_bytes(w3.eth.get_storage_at(market.registry.address, 3)) == 1


def test_listing_ids_are_sequential_from_one(market: Market):
    ids = [
        market.list_dataset(market.actors.alice.address, PRICE),
        market.list_dataset(market.actors.bob.address, 0),
        market.list_dataset(market.actors.alice.address, MAX_PRICE),
    ]
    assert ids == [1, 2, 3]
    assert market.registry.functions.listingCount().call() == 3
    assert market.registry.functions.getListing(3).call()[1] == MAX_PRICE


def test_list_with_a_parent_of_the_same_owner(market: Market):
    alice = market.actors.alice.address
    parent = market.list_dataset(alice, PRICE)
    receipt = market.chain.transact(*list_as(market, alice, parent_id=parent))
    [listed] = events(market.registry, receipt, "DatasetListed")
    assert (listed["listingId"], listed["parentId"]) == (2, parent)


def test_list_rejects_bad_input(market: Market):
    alice, bob = market.actors.alice.address, market.actors.bob.address
    bobs = market.list_dataset(bob, PRICE)
    chain = market.chain
    chain.reverts(*list_as(market, alice, cid=""), "EmptyCid")
    chain.reverts(*list_as(market, alice, price=MAX_PRICE + 1), "PriceTooHigh")
    chain.reverts(*list_as(market, alice, parent_id=99), "UnknownListing", 99)
    chain.reverts(*list_as(market, alice, parent_id=bobs), "ParentNotOwned", bobs)
    assert market.registry.functions.listingCount().call() == 1


# --- price


def test_set_price_by_the_owner(market: Market):
    alice = market.actors.alice.address
    listing = market.list_dataset(alice, PRICE)
    receipt = market.chain.transact(market.registry.functions.setPrice(listing, 5), alice)

    assert market.registry.functions.getListing(listing).call() == [alice, 5, False]
    assert market.registry.functions.priceOf(listing).call() == 5
    assert events(market.registry, receipt, "DatasetPriceChanged") == [
        {"listingId": listing, "oldPrice": PRICE, "newPrice": 5}
    ]


def test_set_price_rejections(market: Market):
    alice, bob = market.actors.alice.address, market.actors.bob.address
    listing = market.list_dataset(alice, PRICE)
    set_price = market.registry.functions.setPrice
    market.chain.reverts(set_price(listing, 1), bob, "NotListingOwner")
    market.chain.reverts(set_price(7, 1), alice, "UnknownListing", 7)
    market.chain.reverts(set_price(listing, MAX_PRICE + 1), alice, "PriceTooHigh")
    market.chain.transact(market.registry.functions.delist(listing), alice)
    market.chain.reverts(set_price(listing, 1), alice, "ListingDelisted", listing)


# --- delist


def test_delist_by_the_owner(market: Market):
    alice = market.actors.alice.address
    listing = market.list_dataset(alice, PRICE)
    receipt = market.chain.transact(market.registry.functions.delist(listing), alice)

    assert market.registry.functions.getListing(listing).call() == [alice, PRICE, True]
    assert events(market.registry, receipt, "DatasetDelisted") == [{"listingId": listing}]
    market.chain.view_reverts(
        market.registry.functions.priceOf(listing), "ListingDelisted", listing
    )


def test_delist_rejections(market: Market):
    alice, bob = market.actors.alice.address, market.actors.bob.address
    listing = market.list_dataset(alice, PRICE)
    delist = market.registry.functions.delist
    market.chain.reverts(delist(listing), bob, "NotListingOwner")
    market.chain.reverts(delist(3), alice, "UnknownListing", 3)
    market.chain.transact(delist(listing), alice)
    market.chain.reverts(delist(listing), alice, "AlreadyDelisted", listing)


# --- views


def test_views_of_unknown_listings_revert(market: Market):
    market.list_dataset(market.actors.alice.address, PRICE)
    for listing_id in (0, 2):
        market.chain.view_reverts(
            market.registry.functions.getListing(listing_id), "UnknownListing", listing_id
        )
        market.chain.view_reverts(
            market.registry.functions.priceOf(listing_id), "UnknownListing", listing_id
        )


def test_total_price_of(market: Market):
    alice = market.actors.alice.address
    ids = [market.list_dataset(alice, p) for p in (1, 20, 300)]
    assert market.registry.functions.totalPriceOf(ids).call() == 321
    assert market.registry.functions.totalPriceOf([]).call() == 0
    market.chain.view_reverts(market.registry.functions.totalPriceOf([1, 9]), "UnknownListing", 9)
    market.chain.transact(market.registry.functions.delist(2), alice)
    market.chain.view_reverts(market.registry.functions.totalPriceOf(ids), "ListingDelisted", 2)


def test_domain_and_type_hashes(market: Market):
    registry = market.registry
    expected = encode_typed_data(
        domain_data=domain(registry.address),
        message_types={"Delisting": [{"name": "listingId", "type": "uint256"}]},
        message_data={"listingId": 1},
    )
    assert registry.functions.DOMAIN_SEPARATOR().call() == expected.header
    fields, name, version, chain_id, verifying, _salt, _ext = (
        registry.functions.eip712Domain().call()
    )
    assert (fields, name, version, chain_id) == (b"\x0f", "DatasetRegistry", "1", 31337)
    assert verifying == registry.address
    for constant, primary in (
        ("LISTING_TYPEHASH", "Listing"),
        ("PRICE_CHANGE_TYPEHASH", "PriceChange"),
        ("DELISTING_TYPEHASH", "Delisting"),
    ):
        assert getattr(registry.functions, constant)().call() == keccak(text=type_string(primary))


# --- listFor


def test_list_for_relays_a_signed_listing(market: Market):
    owner = fresh_account("relayed owner")
    relayer = market.actors.stranger.address
    deadline = market.chain.timestamp() + 3600
    message = listing_message(owner.address, nonce=0, deadline=deadline)
    signature = sign(owner, market.registry.address, "Listing", message)

    receipt = market.chain.transact(list_for_call(market, message, signature), relayer)

    assert market.registry.functions.getListing(1).call() == [owner.address, PRICE, False]
    assert market.registry.functions.nonces(owner.address).call() == 1
    [listed] = events(market.registry, receipt, "DatasetListed")
    assert (listed["owner"], listed["cid"], listed["license"]) == (owner.address, CID, LICENSE)

    # A second one needs the next nonce and may derive from the first.
    second = listing_message(owner.address, nonce=1, deadline=deadline, parentId=1)
    signature = sign(owner, market.registry.address, "Listing", second)
    receipt = market.chain.transact(list_for_call(market, second, signature), relayer)
    assert events(market.registry, receipt, "DatasetListed")[0]["parentId"] == 1
    assert market.registry.functions.nonces(owner.address).call() == 2


def test_list_for_rejects_a_wrong_signer(market: Market):
    owner, impostor = fresh_account("owner"), fresh_account("impostor")
    message = listing_message(owner.address, nonce=0, deadline=market.chain.timestamp() + 600)
    signature = sign(impostor, market.registry.address, "Listing", message)
    market.chain.reverts(
        list_for_call(market, message, signature),
        market.actors.stranger.address,
        "InvalidSignature",
    )


def test_list_for_rejects_a_replayed_signature(market: Market):
    owner = fresh_account("owner")
    message = listing_message(owner.address, nonce=0, deadline=market.chain.timestamp() + 600)
    signature = sign(owner, market.registry.address, "Listing", message)
    relayer = market.actors.stranger.address
    market.chain.transact(list_for_call(market, message, signature), relayer)
    market.chain.reverts(list_for_call(market, message, signature), relayer, "InvalidSignature")
    assert market.registry.functions.listingCount().call() == 1


def test_list_for_rejects_an_expired_deadline(market: Market):
    owner = fresh_account("owner")
    now = market.chain.timestamp()
    message = listing_message(owner.address, nonce=0, deadline=now + 10)
    signature = sign(owner, market.registry.address, "Listing", message)
    relayer = market.actors.stranger.address

    # The deadline itself is still valid...
    snapshot = market.chain.snapshot()
    market.chain.set_next_timestamp(now + 10)
    market.chain.transact(list_for_call(market, message, signature), relayer, gas=300_000)
    market.chain.revert_to(snapshot)
    # ...one second later it is not.
    market.chain.mine_at(now + 11)
    market.chain.reverts(
        list_for_call(market, message, signature), relayer, "SignatureExpired", now + 10
    )


def test_list_for_rejects_a_signature_for_another_chain(market: Market):
    owner = fresh_account("owner")
    message = listing_message(owner.address, nonce=0, deadline=market.chain.timestamp() + 600)
    signature = sign(owner, market.registry.address, "Listing", message, chain_id=1)
    market.chain.reverts(
        list_for_call(market, message, signature),
        market.actors.stranger.address,
        "InvalidSignature",
    )


def test_list_for_rejects_tampered_fields_and_malformed_signatures(market: Market):
    owner = fresh_account("owner")
    message = listing_message(owner.address, nonce=0, deadline=market.chain.timestamp() + 600)
    signature = sign(owner, market.registry.address, "Listing", message)
    relayer = market.actors.stranger.address
    for tampered in ({"price": PRICE + 1}, {"cid": CID + "x"}, {"license": "MIT"}):
        market.chain.reverts(
            list_for_call(market, {**message, **tampered}, signature), relayer, "InvalidSignature"
        )
    market.chain.reverts(
        list_for_call(market, message, signature[:64]), relayer, "InvalidSignature"
    )
    market.chain.reverts(list_for_call(market, message, b"\x00" * 65), relayer, "InvalidSignature")
    # A signature made for another registry (another verifyingContract) does not transfer either.
    other = sign(owner, market.actors.stranger.address, "Listing", message)
    market.chain.reverts(list_for_call(market, message, other), relayer, "InvalidSignature")


def test_list_for_checks_the_listing_rules_too(market: Market):
    owner = fresh_account("owner")
    deadline = market.chain.timestamp() + 600
    relayer = market.actors.stranger.address
    message = listing_message(owner.address, nonce=0, deadline=deadline, cid="")
    signature = sign(owner, market.registry.address, "Listing", message)
    market.chain.reverts(list_for_call(market, message, signature), relayer, "EmptyCid")
    assert market.registry.functions.nonces(owner.address).call() == 0


# --- setPriceFor / delistFor


@pytest.fixture
def relayed(market: Market):
    """A listing (id 1) of a key that never sends transactions itself."""
    owner = fresh_account("owner")
    deadline = market.chain.timestamp() + 3600
    message = listing_message(owner.address, nonce=0, deadline=deadline)
    signature = sign(owner, market.registry.address, "Listing", message)
    market.chain.transact(list_for_call(market, message, signature), market.actors.stranger.address)
    return owner, deadline


def test_set_price_for(market: Market, relayed):
    owner, deadline = relayed
    relayer = market.actors.stranger.address
    message = {"listingId": 1, "price": 42, "nonce": 1, "deadline": deadline}
    signature = sign(owner, market.registry.address, "PriceChange", message)
    call = market.registry.functions.setPriceFor(1, 42, deadline, signature)

    receipt = market.chain.transact(call, relayer)

    assert market.registry.functions.priceOf(1).call() == 42
    assert events(market.registry, receipt, "DatasetPriceChanged") == [
        {"listingId": 1, "oldPrice": PRICE, "newPrice": 42}
    ]
    market.chain.reverts(call, relayer, "InvalidSignature")  # replay
    wrong = sign(
        fresh_account("other"), market.registry.address, "PriceChange", {**message, "nonce": 2}
    )
    market.chain.reverts(
        market.registry.functions.setPriceFor(1, 42, deadline, wrong), relayer, "InvalidSignature"
    )
    market.chain.reverts(
        market.registry.functions.setPriceFor(5, 42, deadline, signature),
        relayer,
        "UnknownListing",
        5,
    )
    past = market.chain.timestamp() - 1
    market.chain.reverts(
        market.registry.functions.setPriceFor(1, 42, past, signature),
        relayer,
        "SignatureExpired",
        past,
    )


def test_delist_for(market: Market, relayed):
    owner, deadline = relayed
    relayer = market.actors.stranger.address
    message = {"listingId": 1, "nonce": 1, "deadline": deadline}
    signature = sign(owner, market.registry.address, "Delisting", message)
    other_chain = sign(owner, market.registry.address, "Delisting", message, chain_id=5)
    market.chain.reverts(
        market.registry.functions.delistFor(1, deadline, other_chain), relayer, "InvalidSignature"
    )

    receipt = market.chain.transact(
        market.registry.functions.delistFor(1, deadline, signature), relayer
    )

    assert market.registry.functions.getListing(1).call()[2] is True
    assert events(market.registry, receipt, "DatasetDelisted") == [{"listingId": 1}]
    assert market.registry.functions.nonces(owner.address).call() == 2
    again = sign(owner, market.registry.address, "Delisting", {**message, "nonce": 2})
    market.chain.reverts(
        market.registry.functions.delistFor(1, deadline, again), relayer, "AlreadyDelisted", 1
    )
    past = market.chain.timestamp() - 1
    market.chain.reverts(
        market.registry.functions.delistFor(1, past, again), relayer, "SignatureExpired", past
    )
    market.chain.reverts(
        market.registry.functions.delistFor(9, deadline, again), relayer, "UnknownListing", 9
    )
