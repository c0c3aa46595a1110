"""The marketplace's side of validation: who the staked validators are (from the chain), which of
them a run is assigned to, the attestation requests it hands them (the run's terms and the data
keys sealed to each validator's key), and the attestations and refusals they send back.

Requests are opened by the training worker (it alone can unwrap the data keys); answers come
through the public API, signed by the validator's own key, so nobody else can answer for it.
"""

from __future__ import annotations

import base64
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from web3 import Web3

from chain.attestations import payouts_hash, recover_attester
from chain.events import ChainEvent
from chain.wrappers import TrainingEscrow
from marketplace.crypto import seal_to
from marketplace.did import did_for
from marketplace.errors import refuse
from validators.models import AttestationRequest, AttestationRound, Validator

logger = logging.getLogger(__name__)


class NotEnoughValidators(Exception):
    """Fewer validators can be assigned than the quorum needs: the run cannot be paid out."""


def dataset_key_context(job_id: str, listing_id: int) -> bytes:
    """What a data key sealed for a validator is bound to: this job and this listing."""
    return f"attest:{job_id.removeprefix('0x').lower()}:listing:{listing_id}".encode()


def dp_seed_context(job_id: str) -> bytes:
    return f"attest:{job_id.removeprefix('0x').lower()}:dp-seed".encode()


def refusal_message(*, request_id: int, job_id: str, reason: str) -> str:
    """The text a validator signs (EIP-191) to refuse a request, so only it can refuse."""
    return f"Refusing attestation request {request_id} for job {job_id.lower()}: {reason}"


# --- Validators, from the chain ------------------------------------------------------------------


def _encryption_key(address: str) -> str:
    """The newest X25519 key the address's DID document publishes (base64), or ""."""
    from marketplace.selectors import did_document

    document, _ = did_document(did_for(address, settings.CHAIN_ID))
    methods = {m["id"]: m for m in document.get("verificationMethod", [])}
    keys = [
        methods[i]["publicKeyBase64"]
        for i in document.get("keyAgreement", [])
        if "publicKeyBase64" in methods.get(i, {})
    ]
    return keys[-1] if keys else ""


def validator_refresh(escrow: TrainingEscrow, address: str) -> Validator:
    """The validator's record, as the escrow and its DID document say now."""
    address = Web3.to_checksum_address(address)
    state = escrow.validator_of(address)
    validator, _ = Validator.objects.update_or_create(
        address=address,
        defaults={
            "stake_wei": state.stake_wei,
            "status": Validator.CHAIN_STATUS[state.status],
            "available_at": state.available_at,
            "encryption_key": _encryption_key(address),
        },
    )
    return validator


def validators_refresh(escrow: TrainingEscrow) -> list[Validator]:
    """Every address that ever staked on the escrow, refreshed from the chain."""
    addresses = {e.args["validator"] for e in escrow.validator_events("Staked")}
    return [validator_refresh(escrow, address) for address in sorted(addresses)]


def validator_event_record(w3: Web3, event: ChainEvent) -> None:
    """Indexer handler for Staked, UnstakeRequested, StakeWithdrawn and Slashed."""
    escrow = TrainingEscrow.deployed(w3)
    validator = validator_refresh(escrow, event.args["validator"])
    if event.name == "Slashed":  # once per validator: it is removed
        Validator.objects.filter(pk=validator.pk).update(
            slashed_wei=int(event.args["reward"]) + int(event.args["burned"])
        )


def assigned(job_id: bytes, validators: list[Validator], *, count: int, min_stake: int):
    """A deterministic choice from the job id among the active validators with a published key:
    ordered by keccak256(job id | address), the first `count`."""
    eligible = [
        v
        for v in validators
        if v.status == Validator.Status.ACTIVE and v.stake_wei >= min_stake and v.encryption_key
    ]
    return sorted(eligible, key=lambda v: keccak(job_id + bytes.fromhex(v.address[2:])))[:count]


# --- Requests ------------------------------------------------------------------------------------


def attestation_round_open(
    *, run, spec: dict, data_keys: dict[int, bytes], dp_seed: bytes | None
) -> AttestationRound:
    """Assign the run to validators and hand each its request (once per run)."""
    existing = AttestationRound.objects.filter(run=run).first()
    if existing is not None:
        return existing
    escrow = TrainingEscrow.deployed()
    terms = escrow.validator_terms()
    job_id = bytes.fromhex(run.job_id)
    chosen = assigned(
        job_id, validators_refresh(escrow), count=terms.validators_per_run,
        min_stake=terms.min_stake_wei,
    )  # fmt: skip
    if len(chosen) < terms.quorum:
        raise NotEnoughValidators(
            f"Only {len(chosen)} validator(s) are staked with a published encryption key, and "
            f"{terms.quorum} must re-compute a run before it is paid out."
        )
    with transaction.atomic():
        round_, created = AttestationRound.objects.get_or_create(
            run=run,
            defaults={
                "quorum": terms.quorum,
                "validators_per_run": terms.validators_per_run,
                "deadline": timezone.now()
                + timedelta(seconds=settings.ATTESTATION_TIMEOUT_SECONDS),
            },
        )
        if not created:
            return round_
        for position, validator in enumerate(chosen):
            public = base64.b64decode(validator.encryption_key)
            AttestationRequest.objects.create(
                round=round_,
                validator=validator,
                position=position,
                spec=spec,
                sealed_keys={
                    str(listing_id): base64.b64encode(
                        seal_to(public, key, context=dataset_key_context(run.job_id, listing_id))
                    ).decode()
                    for listing_id, key in data_keys.items()
                },
                sealed_dp_seed=""
                if dp_seed is None
                else base64.b64encode(
                    seal_to(public, dp_seed, context=dp_seed_context(run.job_id))
                ).decode(),
            )
    return round_


def _hex32(value: str, what: str) -> bytes:
    raw = value.removeprefix("0x")
    if len(raw) != 64:
        raise refuse(f"{what} must be 32 bytes in hex (0x and 64 digits).", "bad_hash")
    try:
        return bytes.fromhex(raw)
    except ValueError:
        raise refuse(f"{what} must be 32 bytes in hex (0x and 64 digits).", "bad_hash") from None


def _signature(value: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 65:
        raise refuse("The signature must be 65 bytes in hex.", "bad_signature")
    return raw


def attestation_answer_record(
    *,
    request_id: int,
    signature: str,
    report_hash: str = "",
    payouts_hash_hex: str = "",
    refusal: str = "",
) -> AttestationRequest:
    """Record a validator's attestation (EIP-712, checked against the assigned validator, this job
    and the hashes given) or its signed refusal; the run's settlement is then looked at again."""
    with transaction.atomic():
        request = (
            AttestationRequest.objects.select_for_update()
            .select_related("round__run", "validator")
            .filter(pk=request_id)
            .first()
        )
        if request is None:
            raise refuse("There is no such attestation request.", "not_found", 404)
        run = request.round.run
        raw = _signature(signature)
        if request.status != AttestationRequest.Status.OPEN:
            if request.signature == "0x" + raw.hex():
                return request  # the same answer again
            raise refuse("This request was already answered.", "already_answered", 409)
        if refusal:
            signer = Account.recover_message(
                encode_defunct(
                    text=refusal_message(
                        request_id=request.pk, job_id="0x" + run.job_id, reason=refusal
                    )
                ),
                signature=raw,
            )
            fields = {"status": AttestationRequest.Status.REFUSED, "reason": refusal[:2000]}
        else:
            report, payouts = (
                _hex32(report_hash, "report_hash"),
                _hex32(payouts_hash_hex, "payouts_hash"),
            )
            signer = recover_attester(
                raw, chain_id=settings.CHAIN_ID, escrow=request.spec["escrow"],
                job_id=bytes.fromhex(run.job_id), report_hash=report, payouts_hash=payouts,
            )  # fmt: skip
            fields = {
                "status": AttestationRequest.Status.ATTESTED,
                "report_hash": "0x" + report.hex(),
                "payouts_hash": "0x" + payouts.hex(),
            }
        if signer != Web3.to_checksum_address(request.validator.address):
            raise refuse(
                "The signature is not the assigned validator's: it must sign this job's "
                "attestation (or refusal) with its own key.",
                "wrong_signer",
                403,
            )
        for name, value in {**fields, "signature": "0x" + raw.hex()}.items():
            setattr(request, name, value)
        request.answered_at = timezone.now()
        request.save()
        run_id = run.pk
        transaction.on_commit(lambda: _look_at_settlement(run_id))
    return request


def _look_at_settlement(run_id: int) -> None:
    from training.services import queue_settlement

    queue_settlement(run_id)


# --- What the settlement needs --------------------------------------------------------------------


def expected_payouts_hash(report: dict) -> str:
    payees = [d["owner"] for d in report["datasets"]]
    amounts = [int(d["amount_wei"]) for d in report["datasets"]]
    return "0x" + payouts_hash(payees, amounts).hex()


def attestation_outlook(run) -> tuple[str, list[bytes]]:
    """("ready", signatures) once a quorum attested the run's own report and payouts;
    ("waiting", []) while it still may; ("short", []) when it no longer can (too many refusals or
    other reports, or the deadline passed)."""
    round_ = AttestationRound.objects.filter(run=run).first()
    if round_ is None or not run.report_hash:
        return "waiting", []
    expected = expected_payouts_hash(run.report)
    requests = list(round_.requests.all())
    matching = [
        r
        for r in requests
        if r.status == AttestationRequest.Status.ATTESTED
        and r.report_hash.lower() == run.report_hash.lower()
        and r.payouts_hash.lower() == expected.lower()
    ]
    if len(matching) >= round_.quorum:
        return "ready", [bytes.fromhex(r.signature.removeprefix("0x")) for r in matching]
    still_open = sum(r.status == AttestationRequest.Status.OPEN for r in requests)
    if len(matching) + still_open < round_.quorum or timezone.now() >= round_.deadline:
        return "short", []
    return "waiting", []


def shortfall_reason(run) -> str:
    """Why a run's quorum was not reached, in the buyer's words."""
    round_ = AttestationRound.objects.filter(run=run).first()
    if round_ is None:
        return "No validator was assigned to re-compute this run."
    requests = list(round_.requests.select_related("validator"))
    expected = expected_payouts_hash(run.report) if run.report_hash else ""
    agreed = [
        r
        for r in requests
        if r.status == AttestationRequest.Status.ATTESTED
        and r.report_hash.lower() == run.report_hash.lower()
        and r.payouts_hash.lower() == expected.lower()
    ]
    differed = [
        r for r in requests if r.status == AttestationRequest.Status.ATTESTED and r not in agreed
    ]
    refused = [r for r in requests if r.status == AttestationRequest.Status.REFUSED]
    parts = [
        f"{len(agreed)} of {len(requests)} validators attested this run's report; "
        f"{round_.quorum} are needed before the escrow pays out"
    ]
    if differed:
        parts.append(f"{len(differed)} computed a different report")
    if refused:
        parts.append(
            f"{len(refused)} refused ("
            + "; ".join(f"{r.validator.address[:10]}…: {r.reason}" for r in refused)
            + ")"
        )
    if timezone.now() >= round_.deadline:
        minutes = max(1, settings.ATTESTATION_TIMEOUT_SECONDS // 60)
        parts.append(f"the others did not answer within {minutes} minute(s)")
    return "; ".join(parts) + "."
