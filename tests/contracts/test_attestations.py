"""chain/attestations.py computes what the escrow computes: the payouts hash, the EIP-712 digest a
validator signs, and signatures the escrow accepts."""

from __future__ import annotations

import pytest
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from chain.attestations import (
    attestation_digest,
    attestation_typed_data,
    payouts_hash,
    recover_attester,
    sign_attestation,
)
from tests.contracts.conftest import CHAIN_ID, MODEL_CID, REPORT_HASH, Market, events

JOB_ID = keccak(text="job attested")


def attestation(market: Market, payouts: bytes, report_hash: bytes = REPORT_HASH) -> dict:
    return {
        "chain_id": CHAIN_ID,
        "escrow": market.escrow.address,
        "job_id": JOB_ID,
        "report_hash": report_hash,
        "payouts_hash": payouts,
    }


def test_the_payouts_hash_is_the_escrows(market: Market):
    a = market.actors
    payees = [a.alice.address, a.bob.address, a.alice.address]
    amounts = [10**18, 0, 2**256 - 1]
    assert (
        payouts_hash(payees, amounts)
        == market.escrow.functions.payoutsHashOf(payees, amounts).call()
    )
    # Addresses in any case hash the same.
    assert payouts_hash([p.lower() for p in payees], amounts) == payouts_hash(payees, amounts)
    assert payouts_hash([], []) == market.escrow.functions.payoutsHashOf([], []).call()
    assert (
        payouts_hash(payees, amounts[:2])
        == market.escrow.functions.payoutsHashOf(payees, amounts[:2]).call()
    )


def test_the_digest_and_the_domain_are_the_escrows(market: Market):
    payouts = keccak(text="payouts")
    digest = attestation_digest(**attestation(market, payouts))
    assert digest == market.escrow.functions.attestationDigest(JOB_ID, REPORT_HASH, payouts).call()

    typed = attestation_typed_data(**attestation(market, payouts))
    assert typed["primaryType"] == "Attestation"
    assert typed["domain"]["verifyingContract"] == market.escrow.address
    assert typed["message"]["jobId"] == "0x" + JOB_ID.hex()
    domain_separator = encode_typed_data(full_message=typed).header
    assert domain_separator == market.escrow.functions.DOMAIN_SEPARATOR().call()
    _fields, name, version, chain_id, verifying, *_ = market.escrow.functions.eip712Domain().call()
    assert (name, version, chain_id, verifying) == (
        "TrainingEscrow",
        "2",
        CHAIN_ID,
        market.escrow.address,
    )
    with pytest.raises(ValueError):
        attestation_typed_data(**{**attestation(market, payouts), "job_id": b"\x01" * 31})


def test_a_signature_recovers_to_its_validator_and_to_no_one_for_another_attestation(
    market: Market,
):
    validator = market.validators[0]
    payouts = keccak(text="payouts")
    signature = sign_attestation(validator.key, **attestation(market, payouts))
    assert len(signature) == 65
    assert recover_attester(signature, **attestation(market, payouts)) == validator.address
    other = recover_attester(signature, **attestation(market, payouts, keccak(text="other")))
    assert other != validator.address


def test_the_escrow_settles_on_signatures_made_by_chain_attestations(market: Market):
    a = market.actors
    market.list_dataset(a.alice.address, 10**18)
    _, job = market.fund(JOB_ID, [1])
    amounts = [job[2] - job[3]]
    payouts = payouts_hash(job[6], amounts)
    signatures = [
        sign_attestation(v.key, **attestation(market, payouts)) for v in market.validators[:2]
    ]
    receipt = market.chain.transact(
        market.escrow.functions.settle(job, amounts, MODEL_CID, REPORT_HASH, signatures),
        a.operator.address,
    )
    assert events(market.escrow, receipt, "JobSettled")[0]["validators"] == [
        v.address for v in market.validators[:2]
    ]
