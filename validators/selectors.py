"""Reads of validators and attestations for the API and pages."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Q

from marketplace.did import did_for
from validators.models import AttestationRequest, AttestationRound, Validator

Attested = AttestationRequest.Status.ATTESTED


def validators_list() -> list[dict]:
    validators = Validator.objects.annotate(
        attested=Count("requests", filter=Q(requests__status=Attested))
    ).order_by("-stake_wei", "address")
    return [
        {
            "address": v.address,
            "did": did_for(v.address, settings.CHAIN_ID),
            "stake_wei": str(v.stake_wei),
            "status": v.status,
            "status_label": v.get_status_display(),
            "attestations": v.attested,
            "slashed_wei": str(v.slashed_wei),
            "encryption_key": v.encryption_key or None,
        }
        for v in validators
    ]


def request_detail(request: AttestationRequest) -> dict:
    """Everything a validator needs to re-compute the run; the keys are sealed to its own."""
    run = request.round.run
    return {
        "id": request.pk,
        "run": run.pk,
        "job_id": "0x" + run.job_id,
        "buyer": run.buyer.address,
        "funding_tx": run.funding_tx,
        "funding_block": run.funding_block,
        "chain_id": settings.CHAIN_ID,
        "validator": request.validator.address,
        "spec": request.spec,
        "sealed_keys": request.sealed_keys,
        "sealed_dp_seed": request.sealed_dp_seed or None,
        "deadline": request.round.deadline.isoformat(),
        "status": request.status,
    }


def open_requests_for(address: str, *, limit: int = 50) -> list[dict]:
    requests = (
        AttestationRequest.objects.filter(
            validator__address__iexact=address,
            status=AttestationRequest.Status.OPEN,
            # A run that failed or completed needs no more work.
            round__run__status__in=("running", "settling"),
        )
        .select_related("round__run__buyer", "validator")
        .order_by("created")[:limit]
    )
    return [request_detail(r) for r in requests]


def run_attestations(run) -> dict:
    """The run's quorum, the attestations anyone can check against the chain, and what each
    assigned validator answered."""
    round_ = AttestationRound.objects.filter(run=run).first()
    if round_ is None:
        return {"quorum": None, "attestation_deadline": None, "attestations": [], "validators": []}
    requests = list(round_.requests.select_related("validator").order_by("position"))
    return {
        "quorum": round_.quorum,
        "attestation_deadline": round_.deadline.isoformat(),
        "attestations": [
            {
                "validator": r.validator.address,
                "signature": r.signature,
                "report_hash": r.report_hash,
                "payouts_hash": r.payouts_hash,
            }
            for r in requests
            if r.status == Attested
        ],
        "validators": [
            {
                "validator": r.validator.address,
                "did": did_for(r.validator.address, settings.CHAIN_ID),
                "status": r.status,
                "status_label": r.get_status_display(),
                "agrees": r.status == Attested and r.report_hash.lower() == run.report_hash.lower(),
                "reason": r.reason,
            }
            for r in requests
        ],
    }
