"""did:ethr identifiers and documents (https://github.com/decentralized-identity/ethr-did-resolver
/blob/master/doc/did-method-spec.md), built from ERC-1056 registry events."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from functools import lru_cache

import base58
from web3 import Web3

DID_PATTERN = re.compile(r"^did:ethr:(?:(0x[0-9a-fA-F]+|[a-z0-9]+):)?(0x[0-9a-fA-F]{40})$")
NULL_ADDRESS = "0x0000000000000000000000000000000000000000"

# Attribute names this marketplace publishes from the profile page.
SERVICE_ATTRIBUTE = "did/svc/MarketplaceProfile"
ENCRYPTION_KEY_ATTRIBUTE = "did/pub/X25519/enc/base64"

_KEY_TYPES = {
    "Secp256k1": "EcdsaSecp256k1VerificationKey2019",
    "Ed25519": "Ed25519VerificationKey2018",
    "X25519": "X25519KeyAgreementKey2019",
}


@lru_cache(maxsize=4096)  # checksumming hashes the address: lists show the same owners often
def did_for(address: str, chain_id: int) -> str:
    return f"did:ethr:{hex(chain_id)}:{Web3.to_checksum_address(address)}"


class InvalidDid(ValueError):
    pass


@dataclass(frozen=True)
class ParsedDid:
    chain_id: int | None  # None: the DID names no network (mainnet by the method's rules)
    address: str


def parse_did(did: str) -> ParsedDid:
    match = DID_PATTERN.match(did)
    if not match:
        raise InvalidDid(f"{did!r} is not a did:ethr identifier (did:ethr:<chain id>:<address>)")
    network, address = match.groups()
    chain_id = None
    if network is not None:
        if not network.startswith("0x"):
            raise InvalidDid(f"{did!r} names the network {network!r}; use its chain id in hex")
        chain_id = int(network, 16)
    return ParsedDid(chain_id, Web3.to_checksum_address(address))


def _bytes32_name(value: str) -> str:
    raw = bytes.fromhex(value.removeprefix("0x")) if value.startswith("0x") else value.encode()
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


def _hex_bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def build_document(
    *, did: str, identity: str, chain_id: int, events: list[dict], now: int
) -> tuple[dict, dict]:
    """(DID document, document metadata) from the identity's events in chronological order.

    Each event: {"kind", "args", "block_number", "block_timestamp"}. `now` is a unix time: a
    delegate or attribute counts while its validTo is after it.
    """
    owner = Web3.to_checksum_address(identity)
    delegates: dict[tuple, dict] = {}
    attributes: dict[tuple, dict] = {}
    counter = 0
    updated = None
    for event in events:
        args = event["args"]
        updated = event["block_timestamp"]
        if event["kind"] == "DIDOwnerChanged":
            owner = Web3.to_checksum_address(args["owner"])
            continue
        counter += 1
        if event["kind"] == "DIDDelegateChanged":
            key = (_bytes32_name(args["delegateType"]), Web3.to_checksum_address(args["delegate"]))
            if args["validTo"] > now:
                delegates[key] = {"n": counter, "valid_to": args["validTo"]}
            else:
                delegates.pop(key, None)
        elif event["kind"] == "DIDAttributeChanged":
            key = (_bytes32_name(args["name"]), args["value"])
            if args["validTo"] > now:
                attributes[key] = {"n": counter, "valid_to": args["validTo"]}
            else:
                attributes.pop(key, None)

    metadata = {"deactivated": owner == NULL_ADDRESS}
    if updated is not None:
        metadata["updated"] = updated
    context = [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/suites/secp256k1recovery-2020/v2",
    ]
    if metadata["deactivated"]:
        return {"@context": context, "id": did}, metadata

    controller = f"{did}#controller"
    document: dict = {
        "@context": context,
        "id": did,
        "verificationMethod": [
            {
                "id": controller,
                "type": "EcdsaSecp256k1RecoveryMethod2020",
                "controller": did,
                "blockchainAccountId": f"eip155:{chain_id}:{owner}",
            }
        ],
        "authentication": [controller],
        "assertionMethod": [controller],
    }
    services = []
    for (delegate_type, delegate), entry in sorted(delegates.items(), key=lambda i: i[1]["n"]):
        method_id = f"{did}#delegate-{entry['n']}"
        document["verificationMethod"].append(
            {
                "id": method_id,
                "type": "EcdsaSecp256k1RecoveryMethod2020",
                "controller": did,
                "blockchainAccountId": f"eip155:{chain_id}:{delegate}",
            }
        )
        document["assertionMethod"].append(method_id)
        if delegate_type == "sigAuth":
            document["authentication"].append(method_id)
    for (name, value), entry in sorted(attributes.items(), key=lambda i: i[1]["n"]):
        parts = name.split("/")
        raw = _hex_bytes(value)
        if len(parts) >= 4 and parts[0] == "did" and parts[1] == "pub" and parts[2] in _KEY_TYPES:
            algorithm, purpose = parts[2], parts[3]
            encoding = parts[4] if len(parts) > 4 else "hex"
            method_id = f"{did}#delegate-{entry['n']}"
            method = {"id": method_id, "type": _KEY_TYPES[algorithm], "controller": did}
            if encoding == "base64":
                method["publicKeyBase64"] = base64.b64encode(raw).decode()
            elif encoding == "base58":
                method["publicKeyBase58"] = base58.b58encode(raw).decode()
            else:
                method["publicKeyHex"] = raw.hex()
            document["verificationMethod"].append(method)
            if purpose == "enc":
                document.setdefault("keyAgreement", []).append(method_id)
            else:
                document["assertionMethod"].append(method_id)
                if purpose == "sigAuth":
                    document["authentication"].append(method_id)
        elif len(parts) >= 3 and parts[0] == "did" and parts[1] == "svc":
            services.append(
                {
                    "id": f"{did}#service-{entry['n']}",
                    "type": parts[2],
                    "serviceEndpoint": raw.decode("utf-8", errors="replace"),
                }
            )
    if services:
        document["service"] = services
    return document, metadata
