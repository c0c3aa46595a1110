"""EIP-712 signing as a wallet would do it (tests only): the DatasetRegistry's relayed calls and
the validators' attestations of a training run for the TrainingEscrow."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from chain import attestations

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


def payouts_hash(payees: list[str], amounts: list[int]) -> bytes:
    return attestations.payouts_hash(list(payees), list(amounts))


def sign_attestation(
    signer: LocalAccount,
    escrow_address: str,
    job_id: bytes,
    report_hash: bytes,
    payouts: bytes,
    chain_id: int = CHAIN_ID,
) -> bytes:
    """A validator's attestation of a job's report and payouts (its payouts hash), signed as a
    validator node signs it (chain/attestations.py, checked against the escrow's own digest in
    test_attestations.py)."""
    return attestations.sign_attestation(
        signer.key, chain_id=chain_id, escrow=escrow_address, job_id=job_id,
        report_hash=report_hash, payouts_hash=payouts,
    )  # fmt: skip
