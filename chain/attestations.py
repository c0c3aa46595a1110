"""A validator's attestation of a training run: the EIP-712 `Attestation` it signs after
re-computing the run, which `TrainingEscrow.settle` needs a quorum of.

Pure functions of their arguments (no database, no node), so a validator can sign and anyone can
check a signature without the marketplace's stack.
"""

from __future__ import annotations

from eth_abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak, to_checksum_address

# The escrow's EIP-712 domain: EIP712("TrainingEscrow", "2") in the contract.
DOMAIN_NAME = "TrainingEscrow"
DOMAIN_VERSION = "2"

ATTESTATION_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Attestation": [
        {"name": "jobId", "type": "bytes32"},
        {"name": "reportHash", "type": "bytes32"},
        {"name": "payoutsHash", "type": "bytes32"},
    ],
}


def payouts_hash(payees: list[str], amounts: list[int]) -> bytes:
    """keccak256(abi.encode(address[] payees, uint256[] amounts)): `payees` are the job's owners,
    one per dataset in the job's order, `amounts` what `settle` credits each (as the escrow's
    `payoutsHashOf`, of any two arrays: `settle` itself refuses amounts that do not pair up)."""
    checksummed = [to_checksum_address(p) for p in payees]
    return keccak(encode(["address[]", "uint256[]"], [checksummed, [int(a) for a in amounts]]))


def _bytes32(name: str, value: bytes) -> str:
    if len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {len(value)}")
    return "0x" + bytes(value).hex()


def attestation_typed_data(
    *, chain_id: int, escrow: str, job_id: bytes, report_hash: bytes, payouts_hash: bytes
) -> dict:
    """The typed data a validator signs (eth_signTypedData_v4 shape)."""
    return {
        "types": ATTESTATION_TYPES,
        "primaryType": "Attestation",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(escrow),
        },
        "message": {
            "jobId": _bytes32("job_id", job_id),
            "reportHash": _bytes32("report_hash", report_hash),
            "payoutsHash": _bytes32("payouts_hash", payouts_hash),
        },
    }


def _signable(**attestation) -> SignableMessage:
    return encode_typed_data(full_message=attestation_typed_data(**attestation))


def attestation_digest(
    *, chain_id: int, escrow: str, job_id: bytes, report_hash: bytes, payouts_hash: bytes
) -> bytes:
    """The EIP-712 digest that is signed (the escrow's `attestationDigest`)."""
    message = _signable(
        chain_id=chain_id, escrow=escrow, job_id=job_id, report_hash=report_hash,
        payouts_hash=payouts_hash,
    )  # fmt: skip
    return keccak(b"\x19" + message.version + message.header + message.body)


def sign_attestation(
    private_key,
    *,
    chain_id: int,
    escrow: str,
    job_id: bytes,
    report_hash: bytes,
    payouts_hash: bytes,
) -> bytes:
    """The validator's 65-byte signature (r, s, v) of its attestation."""
    message = _signable(
        chain_id=chain_id, escrow=escrow, job_id=job_id, report_hash=report_hash,
        payouts_hash=payouts_hash,
    )  # fmt: skip
    return bytes(Account.sign_message(message, private_key).signature)


def recover_attester(
    signature: bytes,
    *,
    chain_id: int,
    escrow: str,
    job_id: bytes,
    report_hash: bytes,
    payouts_hash: bytes,
) -> str:
    """The checksummed address that signed this attestation (for any other attestation, an
    unrelated address: compare it with the validator expected)."""
    message = _signable(
        chain_id=chain_id, escrow=escrow, job_id=job_id, report_hash=report_hash,
        payouts_hash=payouts_hash,
    )  # fmt: skip
    return to_checksum_address(Account.recover_message(message, signature=bytes(signature)))
