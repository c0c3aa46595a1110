"""EIP-712 signing of the DatasetRegistry's relayed calls, as a wallet would do it (tests only)."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

CHAIN_ID = 31337

TYPES: dict[str, list[dict[str, str]]] = {
    "Listing": [
        {"name": "owner", "type": "address"},
        {"name": "cid", "type": "string"},
        {"name": "contentHash", "type": "bytes32"},
        {"name": "metadataHash", "type": "bytes32"},
        {"name": "license", "type": "string"},
        {"name": "price", "type": "uint256"},
        {"name": "parentId", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "PriceChange": [
        {"name": "listingId", "type": "uint256"},
        {"name": "price", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Delisting": [
        {"name": "listingId", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


def type_string(primary: str) -> str:
    fields = ",".join(f"{f['type']} {f['name']}" for f in TYPES[primary])
    return f"{primary}({fields})"


def domain(registry_address: str, chain_id: int = CHAIN_ID) -> dict[str, Any]:
    return {
        "name": "DatasetRegistry",
        "version": "1",
        "chainId": chain_id,
        "verifyingContract": registry_address,
    }


def sign(
    signer: LocalAccount,
    registry_address: str,
    primary: str,
    message: dict[str, Any],
    chain_id: int = CHAIN_ID,
) -> bytes:
    signed = Account.sign_typed_data(
        signer.key,
        domain_data=domain(registry_address, chain_id),
        message_types={primary: TYPES[primary]},
        message_data=message,
    )
    return bytes(signed.signature)


def fresh_account(label: str) -> LocalAccount:
    """A deterministic key that has never been used on the chain (no ETH needed: it only signs)."""
    return Account.from_key(keccak(text=f"marketplace test account {label}"))
