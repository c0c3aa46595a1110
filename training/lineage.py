"""Re-verifying a model's lineage from the chain and IPFS alone (no marketplace database):
the escrow's funding and settlement events, the valuation report (whose CID follows from the hash
the settlement records), the settled model on IPFS, and each dataset listing's bytes. The model
is encrypted for its buyer: whoever can decrypt it checks it against the report's fingerprint
(`model_fingerprint_matches`)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from chain.wrappers import DatasetRegistry, TrainingEscrow
from marketplace.ipfs import IpfsError, iter_cat, raw_cid_for_sha256


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _sha256_of(cid: str) -> str:
    return _sha256_and_size(cid)[0]


def _sha256_and_size(cid: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter_cat(cid):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def model_fingerprint_matches(model_bytes: bytes, report: dict) -> bool:
    """Whether a decrypted model file is the model the report (and so the settlement) names:
    its canonical fingerprint (`training.artifacts.model_fingerprint`) is the report's."""
    from training.artifacts import NotAModelFile, model_fingerprint

    expected = report.get("model_fingerprint")
    if not expected:
        return False
    try:
        return model_fingerprint(model_bytes) == expected
    except NotAModelFile:
        return False


def _attestations_check(escrow, settled, job_id: bytes, report: dict, attesters: list) -> Check:
    """The validators' EIP-712 signatures in the settlement's calldata each recover to one of the
    settlement's attesters, for this job, this report and the report's payouts."""
    from chain.attestations import payouts_hash, recover_attester

    name = "validators signed this job, report and payouts"
    tx = escrow.w3.eth.get_transaction(settled.tx_hash)
    try:
        function, args = escrow.contract.decode_function_input(tx["input"])
    except ValueError:
        return Check(name, False, "the settlement is not a direct call of the escrow")
    if function.fn_name != "settle":
        return Check(name, False, f"the settlement called {function.fn_name}")
    payouts = payouts_hash(
        [d["owner"] for d in report["datasets"]], [int(d["amount_wei"]) for d in report["datasets"]]
    )
    signers = sorted(
        recover_attester(
            bytes(signature),
            chain_id=escrow.w3.eth.chain_id,
            escrow=escrow.address,
            job_id=job_id,
            report_hash=bytes(args["reportHash"]),
            payouts_hash=payouts,
        )  # fmt: skip
        for signature in args["signatures"]
    )
    ok = bool(signers) and signers == sorted(attesters)
    return Check(name, ok, ", ".join(signers) or "no attestation")


def verify_lineage(
    job_id: bytes, *, escrow: TrainingEscrow, registry: DatasetRegistry
) -> list[Check]:
    checks: list[Check] = []
    events = escrow.job_events(job_id)
    settled = next((e for e in events if e.name == "JobSettled"), None)
    # Anyone may fund a job under the same id: the lineage is the settled buyer's job.
    buyer = settled.args["buyer"] if settled else None
    funded = next(
        (e for e in events if e.name == "JobFunded" and buyer in (None, e.args["buyer"])), None
    )
    credits = [e for e in events if e.name == "PayeeCredited"]
    checks.append(Check("funding event", funded is not None, funded.tx_hash if funded else "none"))
    checks.append(
        Check("settlement event", settled is not None, settled.tx_hash if settled else "none")
    )
    if funded is None or settled is None:
        return checks

    report_hash = settled.args["reportHash"].removeprefix("0x")
    report_bytes = b"".join(iter_cat(raw_cid_for_sha256(report_hash)))
    report_ok = hashlib.sha256(report_bytes).hexdigest() == report_hash
    checks.append(Check("report on IPFS matches the settled hash", report_ok, "0x" + report_hash))
    if not report_ok:
        return checks
    report = json.loads(report_bytes)
    checks.append(
        Check(
            "report names this job",
            report["job_id"] == "0x" + job_id.hex(),
            report["job_id"],
        )
    )
    checks.append(
        Check(
            "report names this escrow and chain",
            report.get("escrow") == escrow.address
            and report.get("chain_id") == escrow.w3.eth.chain_id,
            f"{report.get('escrow')} on chain {report.get('chain_id')}",
        )
    )
    model_cid = settled.args["modelCid"]
    try:
        model_hash, model_size = _sha256_and_size(model_cid)
        checks.append(
            Check(
                "settled model is on IPFS",
                model_size > 0,
                f"{model_cid}: {model_size:,} bytes (encrypted), sha-256 {model_hash}",
            )
        )
    except IpfsError as exc:
        checks.append(Check("settled model is on IPFS", False, str(exc)))
    checks.append(
        Check(
            "report fingerprints the model",
            bool(re.fullmatch(r"[0-9a-f]{64}", str(report.get("model_fingerprint", "")))),
            str(report.get("model_fingerprint")),
        )
    )
    listed_ids = [d["listing_id"] for d in report["datasets"]]
    checks.append(
        Check(
            "report's datasets are the funded ones",
            listed_ids == funded.args["datasetIds"],
            ", ".join(map(str, funded.args["datasetIds"])),
        )
    )
    checks.append(
        Check(
            "report pays the owners the job committed",
            [d["owner"] for d in report["datasets"]] == funded.args["owners"],
            ", ".join(funded.args["owners"]),
        )
    )
    for entry in report["datasets"]:
        listing = registry.listed_event(entry["listing_id"])
        if listing is None:
            checks.append(Check(f"listing {entry['listing_id']}", False, "not on the chain"))
            continue
        on_chain = listing.args["contentHash"].removeprefix("0x")
        actual = _sha256_of(listing.args["cid"])
        checks.append(
            Check(
                f"listing {entry['listing_id']} bytes match the chain",
                actual == on_chain == entry["content_sha256"],
                listing.args["cid"],
            )
        )
    # The escrow credits the datasets' owners first, in the job's order, then the validators
    # whose attestations it counted (JobSettled names them).
    owners_credits, validator_credits = (
        credits[: len(report["datasets"])],
        credits[len(report["datasets"]) :],
    )
    paid = [(d["owner"], int(d["amount_wei"])) for d in report["datasets"]]
    credited = [(c.args["payee"], c.args["amount"]) for c in owners_credits]
    checks.append(Check("payouts match the report", paid == credited, f"{len(credited)} payees"))
    attesters = list(settled.args.get("validators", []))
    checks.append(
        Check(
            "validators credited are the settlement's attesters",
            [c.args["payee"] for c in validator_credits] == attesters,
            f"{len(attesters)} validators",
        )
    )
    checks.append(_attestations_check(escrow, settled, job_id, report, attesters))
    checks.append(
        Check(
            "payouts plus fee equal the escrowed value",
            sum(c.args["amount"] for c in credits) + settled.args["fee"] == funded.args["value"],
            f"{funded.args['value']} wei",
        )
    )
    return checks
