"""IdentityRegistry: the ERC-1056 (did:ethr) registry — owners, delegates, attributes, the signed
variants with their raw `0x19 0x00` message format, `changed` blocks and the event back-links a
did:ethr resolver walks."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_bytes

from tests.contracts.conftest import Chain, Market, events
from tests.contracts.signing import fresh_account

VERI_KEY = b"veriKey".ljust(32, b"\x00")
SIG_AUTH = b"sigAuth".ljust(32, b"\x00")
SERVICE = b"did/svc/MarketplaceService".ljust(32, b"\x00")
ENDPOINT = b"https://marketplace.example/api"
DAY = 24 * 3600

# The function selectors and event topics of uPort's EthereumDIDRegistry that did:ethr tools use.
REFERENCE_SELECTORS = {
    "identityOwner(address)": "8733d4e8",
    "changeOwner(address,address)": "f00d4b5d",
    "changeOwnerSigned(address,uint8,bytes32,bytes32,address)": "240cf1fa",
    "addDelegate(address,bytes32,address,uint256)": "a7068d66",
    "validDelegate(address,bytes32,address)": "622b2a3c",
    "revokeDelegate(address,bytes32,address)": "80b29f7c",
    "setAttribute(address,bytes32,bytes,uint256)": "7ad4b0a4",
}


def signed_hash(registry: str, nonce: int, identity: str, action: str, *parts: bytes) -> bytes:
    """The reference's message: keccak256(0x19 0x00 registry nonce identity action ...)."""
    return keccak(
        b"\x19\x00"
        + to_bytes(hexstr=registry)
        + nonce.to_bytes(32, "big")
        + to_bytes(hexstr=identity)
        + action.encode()
        + b"".join(parts)
    )


def vrs(signer: LocalAccount, digest: bytes) -> tuple[int, bytes, bytes]:
    signed = Account.unsafe_sign_hash(digest, signer.key)
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def nonce_of(market: Market, identity: str) -> int:
    owner = market.identity.functions.identityOwner(identity).call()
    return market.identity.functions.nonce(owner).call()


def u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def addr(address: str) -> bytes:
    return to_bytes(hexstr=address)


# --- ABI


def test_selectors_and_event_topics_match_the_reference(market: Market):
    abi = market.identity.abi
    signatures = {
        f"{item['name']}({','.join(i['type'] for i in item['inputs'])})": item
        for item in abi
        if item["type"] in ("function", "event")
    }
    for signature, selector in REFERENCE_SELECTORS.items():
        assert signature in signatures
        assert keccak(text=signature)[:4].hex() == selector
    for event in (
        "DIDOwnerChanged(address,address,uint256)",
        "DIDDelegateChanged(address,bytes32,address,uint256,uint256)",
        "DIDAttributeChanged(address,bytes32,bytes,uint256,uint256)",
    ):
        assert event in signatures
        assert signatures[event]["inputs"][0]["indexed"] is True
        assert not any(i["indexed"] for i in signatures[event]["inputs"][1:])


# --- owner


def test_an_identity_owns_itself_until_it_changes_owner(market: Market):
    alice, bob, carol = (
        a.address for a in (market.actors.alice, market.actors.bob, market.actors.carol)
    )
    identity = market.identity.functions
    assert identity.identityOwner(alice).call() == alice
    assert identity.changed(alice).call() == 0

    receipt = market.chain.transact(identity.changeOwner(alice, bob), alice)

    assert identity.identityOwner(alice).call() == bob
    assert identity.owners(alice).call() == bob
    assert identity.changed(alice).call() == receipt["blockNumber"]
    assert events(market.identity, receipt, "DIDOwnerChanged") == [
        {"identity": alice, "owner": bob, "previousChange": 0}
    ]
    market.chain.reverts(identity.changeOwner(alice, carol), alice, "NotIdentityOwner")

    second = market.chain.transact(identity.changeOwner(alice, carol), bob)
    assert (
        events(market.identity, second, "DIDOwnerChanged")[0]["previousChange"]
        == receipt["blockNumber"]
    )
    assert identity.identityOwner(alice).call() == carol


def test_change_owner_signed(market: Market):
    identity = fresh_account("did subject")  # never holds ETH: a relayer pays
    new_owner = market.actors.bob.address
    relayer = market.actors.stranger.address
    functions = market.identity.functions
    digest = signed_hash(
        market.identity.address, 0, identity.address, "changeOwner", addr(new_owner)
    )
    call = functions.changeOwnerSigned(identity.address, *vrs(identity, digest), new_owner)

    receipt = market.chain.transact(call, relayer)

    assert functions.identityOwner(identity.address).call() == new_owner
    assert functions.nonce(identity.address).call() == 1
    assert events(market.identity, receipt, "DIDOwnerChanged")[0]["owner"] == new_owner
    market.chain.reverts(call, relayer, "BadSignature")  # replay: the nonce moved on

    impostor = fresh_account("impostor")
    digest = signed_hash(market.identity.address, 0, identity.address, "changeOwner", addr(relayer))
    market.chain.reverts(
        functions.changeOwnerSigned(identity.address, *vrs(impostor, digest), relayer),
        relayer,
        "BadSignature",
    )
    # An unrecoverable signature (ecrecover gives the zero address) is rejected too.
    market.chain.reverts(
        functions.changeOwnerSigned(identity.address, 27, b"\x00" * 32, b"\x00" * 32, relayer),
        relayer,
        "BadSignature",
    )


def test_signed_nonce_belongs_to_the_current_owner(market: Market):
    """After a change of owner, the new owner's key signs with the new owner's nonce."""
    identity = fresh_account("subject")
    owner = market.actors.carol  # has a key we can sign with
    functions = market.identity.functions
    relayer = market.actors.stranger.address
    first = signed_hash(
        market.identity.address, 0, identity.address, "changeOwner", addr(owner.address)
    )
    market.chain.transact(
        functions.changeOwnerSigned(identity.address, *vrs(identity, first), owner.address), relayer
    )
    assert nonce_of(market, identity.address) == 0  # carol has not signed anything yet

    digest = signed_hash(
        market.identity.address,
        0,
        identity.address,
        "addDelegate",
        VERI_KEY,
        addr(relayer),
        u256(DAY),
    )
    market.chain.transact(
        functions.addDelegateSigned(identity.address, *vrs(owner, digest), VERI_KEY, relayer, DAY),
        relayer,
    )
    assert functions.nonce(owner.address).call() == 1
    assert functions.nonce(identity.address).call() == 1
    assert functions.validDelegate(identity.address, VERI_KEY, relayer).call() is True


# --- delegates


def test_add_and_revoke_delegate(market: Market):
    alice, delegate = market.actors.alice.address, market.actors.bob.address
    functions = market.identity.functions
    receipt = market.chain.transact(functions.addDelegate(alice, VERI_KEY, delegate, DAY), alice)
    added_at = market.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]

    assert functions.validDelegate(alice, VERI_KEY, delegate).call() is True
    assert functions.validDelegate(alice, SIG_AUTH, delegate).call() is False
    assert functions.delegates(alice, keccak(VERI_KEY), delegate).call() == added_at + DAY
    assert functions.changed(alice).call() == receipt["blockNumber"]
    assert events(market.identity, receipt, "DIDDelegateChanged") == [
        {
            "identity": alice,
            "delegateType": VERI_KEY,
            "delegate": delegate,
            "validTo": added_at + DAY,
            "previousChange": 0,
        }
    ]

    revoked = market.chain.transact(functions.revokeDelegate(alice, VERI_KEY, delegate), alice)
    revoked_at = market.chain.w3.eth.get_block(revoked["blockNumber"])["timestamp"]
    assert functions.validDelegate(alice, VERI_KEY, delegate).call() is False
    assert functions.delegates(alice, keccak(VERI_KEY), delegate).call() == revoked_at
    [event] = events(market.identity, revoked, "DIDDelegateChanged")
    assert (event["validTo"], event["previousChange"]) == (revoked_at, receipt["blockNumber"])


def test_a_delegate_expires(market: Market):
    alice, delegate = market.actors.alice.address, market.actors.bob.address
    functions = market.identity.functions
    market.chain.transact(functions.addDelegate(alice, SIG_AUTH, delegate, 100), alice)
    assert functions.validDelegate(alice, SIG_AUTH, delegate).call() is True
    market.chain.increase_time(101)
    assert functions.validDelegate(alice, SIG_AUTH, delegate).call() is False


def test_delegate_signed_variants(market: Market):
    identity = fresh_account("subject")
    delegate, relayer = market.actors.bob.address, market.actors.stranger.address
    functions = market.identity.functions
    digest = signed_hash(
        market.identity.address,
        0,
        identity.address,
        "addDelegate",
        VERI_KEY,
        addr(delegate),
        u256(DAY),
    )
    add = functions.addDelegateSigned(
        identity.address, *vrs(identity, digest), VERI_KEY, delegate, DAY
    )
    receipt = market.chain.transact(add, relayer)
    assert functions.validDelegate(identity.address, VERI_KEY, delegate).call() is True
    assert events(market.identity, receipt, "DIDDelegateChanged")[0]["delegate"] == delegate
    market.chain.reverts(add, relayer, "BadSignature")

    digest = signed_hash(
        market.identity.address, 1, identity.address, "revokeDelegate", VERI_KEY, addr(delegate)
    )
    wrong = signed_hash(
        market.identity.address, 1, identity.address, "revokeDelegate", SIG_AUTH, addr(delegate)
    )
    market.chain.reverts(
        functions.revokeDelegateSigned(identity.address, *vrs(identity, wrong), VERI_KEY, delegate),
        relayer,
        "BadSignature",
    )
    market.chain.transact(
        functions.revokeDelegateSigned(
            identity.address, *vrs(identity, digest), VERI_KEY, delegate
        ),
        relayer,
    )
    assert functions.validDelegate(identity.address, VERI_KEY, delegate).call() is False
    assert functions.nonce(identity.address).call() == 2


# --- attributes


def test_set_and_revoke_attribute(market: Market):
    alice = market.actors.alice.address
    functions = market.identity.functions
    receipt = market.chain.transact(functions.setAttribute(alice, SERVICE, ENDPOINT, DAY), alice)
    set_at = market.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert events(market.identity, receipt, "DIDAttributeChanged") == [
        {
            "identity": alice,
            "name": SERVICE,
            "value": ENDPOINT,
            "validTo": set_at + DAY,
            "previousChange": 0,
        }
    ]
    assert functions.changed(alice).call() == receipt["blockNumber"]

    revoked = market.chain.transact(functions.revokeAttribute(alice, SERVICE, ENDPOINT), alice)
    assert events(market.identity, revoked, "DIDAttributeChanged") == [
        {
            "identity": alice,
            "name": SERVICE,
            "value": ENDPOINT,
            "validTo": 0,
            "previousChange": receipt["blockNumber"],
        }
    ]


def test_attribute_signed_variants(market: Market):
    identity = fresh_account("subject")
    relayer = market.actors.stranger.address
    functions = market.identity.functions
    digest = signed_hash(
        market.identity.address, 0, identity.address, "setAttribute", SERVICE, ENDPOINT, u256(DAY)
    )
    call = functions.setAttributeSigned(
        identity.address, *vrs(identity, digest), SERVICE, ENDPOINT, DAY
    )
    receipt = market.chain.transact(call, relayer)
    assert events(market.identity, receipt, "DIDAttributeChanged")[0]["value"] == ENDPOINT
    market.chain.reverts(call, relayer, "BadSignature")

    digest = signed_hash(
        market.identity.address, 1, identity.address, "revokeAttribute", SERVICE, ENDPOINT
    )
    revoke = functions.revokeAttributeSigned(
        identity.address, *vrs(identity, digest), SERVICE, ENDPOINT
    )
    market.chain.reverts(
        functions.revokeAttributeSigned(
            identity.address, *vrs(fresh_account("x"), digest), SERVICE, ENDPOINT
        ),
        relayer,
        "BadSignature",
    )
    receipt = market.chain.transact(revoke, relayer)
    assert events(market.identity, receipt, "DIDAttributeChanged")[0]["validTo"] == 0
    assert functions.nonce(identity.address).call() == 2


def test_only_the_owner_may_change_an_identity(market: Market):
    alice, bob = market.actors.alice.address, market.actors.bob.address
    f = market.identity.functions
    for call in (
        f.changeOwner(alice, bob),
        f.addDelegate(alice, VERI_KEY, bob, DAY),
        f.revokeDelegate(alice, VERI_KEY, bob),
        f.setAttribute(alice, SERVICE, ENDPOINT, DAY),
        f.revokeAttribute(alice, SERVICE, ENDPOINT),
    ):
        market.chain.reverts(call, bob, "NotIdentityOwner")


# --- resolver walk


def _walk_history(chain: Chain, market: Market, identity: str) -> list[dict[str, Any]]:
    """What a did:ethr resolver does: start at changed[identity], read that block's events of the
    identity, follow previousChange until 0."""
    history = []
    block = market.identity.functions.changed(identity).call()
    topic = "0x" + to_bytes(hexstr=identity).rjust(32, b"\x00").hex()
    while block:
        logs = chain.w3.eth.get_logs(
            {
                "address": market.identity.address,
                "fromBlock": block,
                "toBlock": block,
                "topics": [None, topic],
            }
        )
        assert logs, f"no event of {identity} in block {block}"
        previous = block
        for log in reversed(logs):
            for name in ("DIDOwnerChanged", "DIDDelegateChanged", "DIDAttributeChanged"):
                event = getattr(market.identity.events, name)()
                if bytes(log["topics"][0]) == keccak(text=event.signature):
                    args = dict(event.process_log(log)["args"])
                    history.append({"event": name, **args})
                    previous = args["previousChange"]
        block = previous
    return history


def test_a_resolver_can_walk_the_history_back(market: Market):
    alice, bob = market.actors.alice.address, market.actors.bob.address
    f = market.identity.functions
    market.chain.transact(f.setAttribute(alice, SERVICE, ENDPOINT, DAY), alice)
    market.chain.transact(f.addDelegate(alice, SIG_AUTH, bob, DAY), alice)
    market.chain.transact(f.changeOwner(alice, bob), alice)

    history = _walk_history(market.chain, market, alice)

    assert [h["event"] for h in history] == [
        "DIDOwnerChanged",
        "DIDDelegateChanged",
        "DIDAttributeChanged",
    ]
    assert history[-1]["previousChange"] == 0


def test_zero_validity_delegate_is_not_valid(market: Market):
    alice, bob = market.actors.alice.address, market.actors.bob.address
    market.chain.transact(market.identity.functions.addDelegate(alice, VERI_KEY, bob, 0), alice)
    assert market.identity.functions.validDelegate(alice, VERI_KEY, bob).call() is False
