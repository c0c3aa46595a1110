"""A training run's computation as a pure function: from the run's spec (what the chain and IPFS
say about the job and its listings, and the run's options) and the datasets' rows to the fitted
model, the payouts and the valuation report whose hash the settlement records.

Nothing here reads the marketplace's database, broker or master key, and `compute` reads no
setting either (the chain and IPFS helpers talk to the configured nodes), so an independent
validator node can re-run a run and sign the report it computes:

    terms, block = funded_job(escrow, job_id=..., buyer=...)           # the JobFunded event
    spec = spec_from_chain(escrow, registry, terms=terms, funding_block=block,
                           options=published_spec.options())           # the run's options
    tables = [read_listing(facts, data_key, workdir) for facts, data_key in ...]
    computed = compute(spec, tables, dp_seed=...)                       # DP runs only
    computed.report_hash                                                # what it signs

The report is deterministic: the same spec and rows give the same bytes in any process (thread
counts of BLAS and OpenMP are pinned to one, every float is rounded, the model is named by its
canonical fingerprint rather than by its file's bytes, which differ on every save), provided the
code version and the libraries are the ones the report names. It holds no time, host name,
database key or ciphertext address."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from chain.wrappers import DatasetRegistry, JobTerms, TrainingEscrow
    from training.payouts import Payout

MIN_ROWS = 30
DATASET_COLUMN = "__dataset__"
# The stages `compute` goes through (TrainingRun.Stage's values), for the caller's progress.
COMBINING, TRAINING, VALUING = "combining", "training", "valuing"
OnStage = Callable[[str, int | None], None]  # (stage, progress percent or None for its start)
JOB_ID = re.compile(r"^0x[0-9a-f]{64}$")
MEMBERSHIP_INFERENCE_METHOD = (
    "loss threshold (Yeom et al. 2018): ROC AUC of -loss separating training rows from "
    "held-out test rows; 0.5 means the model tells nothing about who was trained on"
)
PAYOUT_RULE = (
    "half by price, half by positive contribution (training/payouts.py), from the contributions "
    "as reported"
)


class RunFailed(Exception):
    """A permanent failure of a run: the message is shown to the buyer."""


# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListingFacts:
    """What the chain and IPFS say about one listing of a job."""

    listing_id: int
    owner: str  # checksummed; the owner the job's JobFunded event committed (who is paid)
    price_wei: int  # the registry's getListing(listing_id).price at the funding block
    cid: str  # DatasetListed.cid: the ciphertext on IPFS
    content_sha256: str  # DatasetListed.contentHash, hex without 0x
    metadata: dict  # the metadata document on IPFS (its sha-256 is DatasetListed.metadataHash)

    def as_dict(self) -> dict:
        return {
            "listing_id": self.listing_id,
            "owner": self.owner,
            "price_wei": str(self.price_wei),
            "cid": self.cid,
            "content_sha256": self.content_sha256,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ListingFacts:
        return cls(
            listing_id=int(data["listing_id"]),
            owner=str(data["owner"]),
            price_wei=int(data["price_wei"]),
            cid=str(data["cid"]),
            content_sha256=str(data["content_sha256"]).lower(),
            metadata=dict(data["metadata"]),
        )


# What a run's spec holds besides the chain's facts: the buyer's options and the marketplace's
# privacy minimums and code version (published with the spec for validators).
OPTIONS = (
    "task", "target", "model", "test_fraction", "seed", "dp_epsilon", "curate",
    "min_group_rows", "min_leaf_rows", "code_version",
)  # fmt: skip


@dataclass(frozen=True)
class RunSpec:
    """Everything a run's computation depends on, besides the datasets' rows (and a DP run's
    secret noise seed)."""

    job_id: str  # "0x" + 64 hex
    chain_id: int
    escrow: str  # checksummed address of the escrow
    value_wei: int  # from JobFunded
    fee_wei: int  # from JobFunded
    listings: tuple[ListingFacts, ...]  # in JobFunded's order
    task: str
    target: str
    model: str
    test_fraction: float
    seed: int
    dp_epsilon: float | None
    curate: bool
    min_group_rows: int
    min_leaf_rows: int
    code_version: str

    def __post_init__(self):
        if not JOB_ID.match(self.job_id):
            raise ValueError("a job id is 0x followed by 64 lower-case hex digits")
        if not self.listings:
            raise ValueError("a run trains on at least one listing")
        if not 0 <= self.fee_wei <= self.value_wei:
            raise ValueError("the fee is more than the escrowed value")

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OPTIONS}

    def as_dict(self) -> dict:
        """JSON-safe (amounts in wei as decimal strings); `from_dict` reads it back."""
        return {
            "job_id": self.job_id,
            "chain_id": self.chain_id,
            "escrow": self.escrow,
            "value_wei": str(self.value_wei),
            "fee_wei": str(self.fee_wei),
            "listings": [listing.as_dict() for listing in self.listings],
            **self.options(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        dp_epsilon = data["dp_epsilon"]
        return cls(
            job_id=str(data["job_id"]).lower(),
            chain_id=int(data["chain_id"]),
            escrow=str(data["escrow"]),
            value_wei=int(data["value_wei"]),
            fee_wei=int(data["fee_wei"]),
            listings=tuple(ListingFacts.from_dict(item) for item in data["listings"]),
            task=str(data["task"]),
            target=str(data["target"]),
            model=str(data["model"]),
            test_fraction=float(data["test_fraction"]),
            seed=int(data["seed"]),
            dp_epsilon=None if dp_epsilon is None else float(dp_epsilon),
            curate=bool(data["curate"]),
            min_group_rows=int(data["min_group_rows"]),
            min_leaf_rows=int(data["min_leaf_rows"]),
            code_version=str(data["code_version"]),
        )


# --- the spec from the chain and IPFS ------------------------------------------------------------


def funded_job(
    escrow: TrainingEscrow, *, job_id: bytes, buyer: str, from_block: int = 0
) -> tuple[JobTerms, int]:
    """A buyer's job as its JobFunded event committed it, and the block it was funded in."""
    from web3 import Web3

    from chain.events import logs_between
    from chain.wrappers import JobTerms

    # A buyer funds a job id once: the read stops at its event.
    logs = logs_between(
        escrow.w3, event=escrow.contract.events.JobFunded, from_block=from_block, first_only=True,
        argument_filters={"jobId": job_id, "buyer": Web3.to_checksum_address(buyer)},
    )  # fmt: skip
    if not logs:
        raise RunFailed(f"Job 0x{job_id.hex()} of {buyer} was not funded on the escrow.")
    args = logs[0]["args"]
    terms = JobTerms(
        job_id=bytes(args["jobId"]), buyer=args["buyer"], value_wei=args["value"],
        fee_wei=args["fee"], refund_after=args["refundAfter"],
        dataset_ids=tuple(args["datasetIds"]), owners=tuple(args["owners"]),
    )  # fmt: skip
    return terms, logs[0]["blockNumber"]


def listing_metadata(metadata_sha256: str, *, listing_id: int) -> dict:
    """A listing's metadata document from IPFS: one raw block, so its CID follows from the
    metadataHash of its DatasetListed event; its bytes are checked against that hash."""
    from marketplace.ipfs import iter_cat, raw_cid_for_sha256

    raw = b"".join(iter_cat(raw_cid_for_sha256(metadata_sha256)))
    if hashlib.sha256(raw).hexdigest() != metadata_sha256:
        raise RunFailed(
            f"The metadata on IPFS for listing {listing_id} does not match the hash recorded "
            "on-chain."
        )
    return json.loads(raw)


def spec_facts_from_chain(
    registry: DatasetRegistry, *, terms: JobTerms, funding_block: int, from_block: int = 0
) -> tuple[ListingFacts, ...]:
    """The facts of a job's listings, in its order: each listing's DatasetListed event (up to the
    funding block), its price at the funding block, the owner the job committed, and its
    metadata from IPFS (checked against the event's metadataHash)."""
    from web3 import Web3

    from chain.events import logs_between

    listings = []
    for listing_id, owner in zip(terms.dataset_ids, terms.owners, strict=True):
        # A listing is listed once, most often shortly before it is bought: read back from the
        # funding block and stop at its event.
        logs = logs_between(
            registry.w3, event=registry.contract.events.DatasetListed,
            argument_filters={"listingId": listing_id}, from_block=from_block,
            to_block=funding_block, first_only=True, newest_first=True,
        )  # fmt: skip
        if not logs:
            raise RunFailed(f"Listing {listing_id} is not on the chain.")
        listed = logs[0]["args"]
        _, price_wei, _ = registry.contract.functions.getListing(listing_id).call(
            block_identifier=funding_block
        )
        content_sha256 = bytes(listed["contentHash"]).hex()
        metadata = listing_metadata(bytes(listed["metadataHash"]).hex(), listing_id=listing_id)
        if (metadata.get("content") or {}).get("sha256", content_sha256) != content_sha256:
            raise RunFailed(
                f"The metadata of listing {listing_id} describes other bytes than the ones "
                "recorded on-chain."
            )
        listings.append(
            ListingFacts(
                listing_id=listing_id,
                owner=Web3.to_checksum_address(owner),
                price_wei=price_wei,
                cid=listed["cid"],
                content_sha256=content_sha256,
                metadata=metadata,
            )  # fmt: skip
        )
    return tuple(listings)


def spec_from_chain(
    escrow: TrainingEscrow,
    registry: DatasetRegistry,
    *,
    terms: JobTerms,
    funding_block: int,
    options: dict[str, Any],
    from_block: int = 0,
) -> RunSpec:
    """The spec of a funded job: the chain's facts and the run's `options` (see OPTIONS)."""
    unknown = set(options) ^ set(OPTIONS)
    if unknown:
        raise ValueError(f"the run's options are {', '.join(OPTIONS)}; not {sorted(unknown)}")
    return RunSpec(
        job_id="0x" + terms.job_id.hex(),
        chain_id=escrow.w3.eth.chain_id,
        escrow=escrow.address,
        value_wei=terms.value_wei,
        fee_wei=terms.fee_wei,
        listings=spec_facts_from_chain(
            registry, terms=terms, funding_block=funding_block, from_block=from_block
        ),
        **options,
    )


# --- the rows ------------------------------------------------------------------------------------


def read_listing(facts: ListingFacts, data_key: bytes, workdir: Path) -> pd.DataFrame:
    """A listing's rows, read as the listing read them: the ciphertext from IPFS by its CID,
    checked against the on-chain content hash (`datasets.listed.ContentMismatch` when it
    differs), decrypted with `data_key` into a private file in `workdir` (or in memory) that is
    removed once read, in the file format the listing's metadata records."""
    from datasets.listed import listed_rows

    table = listed_rows(
        cid=facts.cid, expected_sha256=facts.content_sha256, data_key=data_key,
        reading=(facts.metadata.get("content") or {}).get("reading"), workdir=workdir,
        label=f"listing {facts.listing_id}",
    )  # fmt: skip
    return table.to_pandas()


# --- the computation -----------------------------------------------------------------------------


@dataclass
class Computed:
    """What a run's computation gives: the report (and its canonical bytes and hash, what the
    settlement records), the fitted model and the payouts."""

    report: dict
    report_bytes: bytes  # artifacts.canonical_json(report)
    report_hash: str  # "0x" + sha-256 of report_bytes
    pipeline: object  # the fitted scikit-learn pipeline
    model_bytes: bytes  # the skops file (its bytes differ on every save: never hashed as such)
    payouts: list[Payout] = field(default_factory=list)  # in the listings' order


def compute(
    spec: RunSpec,
    tables: list[pd.DataFrame],
    *,
    dp_seed: bytes | None = None,
    on_stage: OnStage | None = None,
) -> Computed:
    """Combine the listings' rows (`tables`, in the spec's order), leave out the columns that
    identify people or rows, fit and score the model (with differential privacy when the spec
    asks for it, its noise drawn from the secret `dp_seed`), value each dataset, pay it, and
    write the report. Raises `RunFailed` when the rows cannot give a model."""
    from threadpoolctl import threadpool_limits

    from training import ml  # noqa: F401 - loads the BLAS and OpenMP libraries to limit

    if len(tables) != len(spec.listings):
        raise ValueError(f"{len(spec.listings)} listings but {len(tables)} tables")
    if spec.dp_epsilon is not None and dp_seed is None:
        raise ValueError("a differentially private run draws its noise from a secret dp_seed")
    stage = on_stage or (lambda name, progress: None)
    # Multi-threaded BLAS and OpenMP sum in an order that depends on the thread count, so
    # probabilities (and the report) would differ between machines, and some estimators keep
    # the count they used: one thread everywhere (threadpoolctl limits the libraries loaded).
    with threadpool_limits(limits=1):
        return _compute(spec, tables, dp_seed, stage)


def _compute(spec: RunSpec, tables: list, dp_seed: bytes | None, stage: OnStage) -> Computed:
    from training import artifacts, ml, privacy
    from training.payouts import payouts_for

    stage(COMBINING, None)
    combined, owners = _combine(spec, tables)
    combined, excluded = _without_identifying_columns(spec, combined)

    stage(TRAINING, None)
    dp = None
    if spec.dp_epsilon is not None:  # bounds from the listings' public statistics only
        dp = privacy.DPRequest(
            epsilon=spec.dp_epsilon,
            noise_seed=dp_seed,
            classes=privacy.public_classes(
                [facts.metadata.get("columns") or [] for facts in spec.listings], spec.target
            ),
        )
    try:
        result = ml.fit_and_score(
            combined, target=spec.target, task=spec.task, model=spec.model,
            test_fraction=spec.test_fraction, seed=spec.seed, dp=dp,
            min_group_rows=spec.min_group_rows, min_leaf_rows=spec.min_leaf_rows,
            owners=owners, credited=_credited(combined, owners), curate=spec.curate,
            on_valuing=lambda: stage(VALUING, None),
        )  # fmt: skip
    except ValueError as exc:
        raise RunFailed(f"The model could not be trained on this data: {exc}") from exc
    # The payouts follow from the contributions as the report states them, so anyone can
    # recompute the amounts from the report alone.
    contributions = {
        listing: round(value, 8) for listing, value in result.valuation.contributions.items()
    }
    payouts = payouts_for(
        distributable_wei=spec.value_wei - spec.fee_wei,
        datasets=[(f.listing_id, f.owner, f.price_wei) for f in spec.listings],
        contributions=contributions,
    )
    model_bytes = artifacts.model_to_bytes(result.pipeline)
    report = _report(spec, result, payouts, excluded, artifacts.model_fingerprint(model_bytes))
    report_bytes = artifacts.canonical_json(report)
    return Computed(
        report=report,
        report_bytes=report_bytes,
        report_hash="0x" + hashlib.sha256(report_bytes).hexdigest(),
        pipeline=result.pipeline,
        model_bytes=model_bytes,
        payouts=payouts,
    )


def _combine(spec: RunSpec, tables: list):
    """One frame of the columns every listing has, rows without a target value left out, and
    the listing of each row."""
    import pandas as pd

    frames = []
    for facts, table in zip(spec.listings, tables, strict=True):
        frame = table.copy()
        frame[DATASET_COLUMN] = facts.listing_id
        frames.append(frame)
    shared = [c for c in frames[0].columns if all(c in f.columns for f in frames[1:])]
    if spec.target not in shared:
        raise RunFailed(f"The target column {spec.target!r} is not in every dataset.")
    combined = pd.concat([f[shared] for f in frames], ignore_index=True)
    combined = combined.dropna(subset=[spec.target]).reset_index(drop=True)
    owners = combined.pop(DATASET_COLUMN).to_numpy()
    if len(combined) < MIN_ROWS:
        raise RunFailed(
            f"Only {len(combined)} rows have a target value; at least {MIN_ROWS} are needed."
        )
    return combined, owners


def _credited(combined, owners):
    """Whether each row is credited to its own dataset: each distinct row (the listing's copy
    check's row signature: numbers within about 0.1 %) once, to the earliest listing of the run
    holding it (the lowest listing id)."""
    from datasets.copycats import row_keys
    from training.valuation import credited_to_earliest

    return credited_to_earliest(row_keys(combined), owners)


def _without_identifying_columns(spec: RunSpec, combined):
    """The combined rows without the columns that identify people or rows (unless every owner
    who listed them opted them in, in the metadata they signed), and which were left out and
    why."""
    from training.features import excluded_columns, listed_columns_of_metadata

    listings = [listed_columns_of_metadata(facts.metadata) for facts in spec.listings]
    excluded = excluded_columns(combined, target=spec.target, listings=listings)
    combined = combined.drop(columns=[x["column"] for x in excluded])
    if combined.shape[1] < 2:
        raise RunFailed(
            "No column is left to learn from: every column besides the target identifies people "
            "or rows (" + "; ".join(f"{x['column']}: {x['reason']}" for x in excluded) + ")."
        )
    return combined, excluded


def _report(spec: RunSpec, result, payouts: list, excluded: list, fingerprint: str) -> dict:
    """The valuation report: only what follows from the spec and the rows."""
    from training import artifacts, valuation

    values = result.valuation
    paid = {p.dataset_id: p for p in payouts}
    return {
        "job_id": spec.job_id,
        "chain_id": spec.chain_id,
        "escrow": spec.escrow,
        "task": spec.task,
        "target": spec.target,
        "model": spec.model,
        "test_fraction": spec.test_fraction,
        "metrics": {k: round(v, 6) for k, v in result.metrics.items()},
        "privacy": {
            "excluded_columns": excluded,
            "min_group_rows": spec.min_group_rows,
            "min_leaf_rows": spec.min_leaf_rows,
            "folded_categories": result.folded_categories,
            "dropped_classes": result.dropped_classes,
        },
        "figures": result.figures,
        "differential_privacy": result.privacy["differential_privacy"],
        "membership_inference_auc": result.privacy["membership_inference_auc"],
        "membership_inference_method": MEMBERSHIP_INFERENCE_METHOD,
        "valuation": {
            "method": values.method,
            "parameters": values.params,
            "seed": spec.seed,
            "rows_valued": values.rows_valued,
            "description": valuation.DESCRIPTION,
            "curate": spec.curate,
            "curation_rule": valuation.CURATION_RULE,
            "benchmark": valuation.BENCHMARK,
            "payout_rule": PAYOUT_RULE,
        },
        "excluded_rows": {
            str(f.listing_id): values.excluded_rows.get(f.listing_id, 0) for f in spec.listings
        },
        "datasets": [
            {
                "listing_id": f.listing_id,
                "title": f.metadata.get("title", ""),
                "owner": f.owner,
                "content_sha256": f.content_sha256,
                "price_wei": str(f.price_wei),
                "contribution": round(paid[f.listing_id].contribution, 8),
                "amount_wei": str(paid[f.listing_id].amount_wei),
                "excluded_rows": values.excluded_rows.get(f.listing_id, 0),
                "uncredited_rows": values.uncredited_rows.get(f.listing_id, 0),
            }
            for f in spec.listings
        ],
        "value_wei": str(spec.value_wei),
        "fee_wei": str(spec.fee_wei),
        "model_fingerprint": fingerprint,
        "model_fingerprint_method": artifacts.FINGERPRINT_METHOD,
        "code_version": spec.code_version,
        "libraries": artifacts.library_versions(),
    }
