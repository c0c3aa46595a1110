"""Reads of training runs for the API and the pages."""

from __future__ import annotations

import hashlib
import io

from django.conf import settings
from django.db.models import QuerySet

from marketplace.errors import ApplicationError
from marketplace.models import User
from marketplace.money import wei_to_eth
from training.models import TrainingRun
from training.services import STAGES
from validators.selectors import run_attestations


def runs_of_buyer(user: User) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(buyer=user).prefetch_related("inputs__dataset")


def run_for(user: User, run_id: int, *, buyer_only: bool = False) -> TrainingRun:
    """The run if `user` may see it: its buyer, or (unless buyer_only) a contributor to it."""
    run = TrainingRun.objects.select_related("buyer").filter(pk=run_id).first()
    if run is None:
        raise ApplicationError("No such training run.", {"code": "not_found"}, status_code=404)
    if run.buyer_id == user.pk:
        return run
    if buyer_only:
        raise ApplicationError(
            "Only the buyer can download the model.", {"code": "forbidden"}, status_code=403
        )
    if user.address and run.inputs.filter(owner_address=user.address).exists():
        return run
    raise ApplicationError(
        "Only the buyer and the run's contributors can see it.", {"code": "forbidden"},
        status_code=403,
    )  # fmt: skip


def _rows(count: int) -> str:
    return f"{count} of its row{'' if count == 1 else 's'}"


def payout_sentences(run: TrainingRun, inputs: list) -> dict[int, str]:
    """Per dataset (by listing id), the payout in a sentence its owner understands."""
    from training.payouts import payout_parts

    if run.funded_value_wei is None or any(e.amount_wei is None for e in inputs):
        return {}
    parts = payout_parts(
        distributable_wei=int(run.funded_value_wei) - int(run.fee_wei or 0),
        datasets=[(e.listing_id, e.owner_address, int(e.price_wei)) for e in inputs],
        contributions={e.listing_id: e.contribution for e in inputs},
    )
    sentences = {}
    for e in inputs:
        part = parts[e.listing_id]
        by_price = wei_to_eth(int(part.price_part_wei))
        price = (
            f"{by_price} ETH is its {float(part.price_share):.0%} of the half split by price "
            "(its price's share of the datasets' prices)"
        )
        if part.contributed:
            earned = wei_to_eth(int(part.contribution_part_wei))
            merit = (
                f"{earned} ETH its {float(part.contribution_share):.0%} of the half split by "
                "contribution (its rows' share of what all the datasets' rows added to the "
                "model's predictions on rows it had not seen)"
            )
        elif any(p.contributed for p in parts.values()):
            merit = (
                "nothing of the half split by contribution, because its rows did not improve the "
                "model's predictions on rows it had not seen"
            )
        else:
            merit = (
                f"{wei_to_eth(int(part.contribution_part_wei))} ETH of the half meant for "
                "contribution, which was split by price because no dataset's rows improved the "
                "model's predictions"
            )
        sentence = (
            f"“{e.dataset.title}” earned {wei_to_eth(int(e.amount_wei))} ETH: {price}, and {merit}."
        )
        if e.excluded_rows:
            sentence += (
                f" {_rows(e.excluded_rows).capitalize()} were left out of the model as harmful "
                "(the buyer asked for curation) and earned nothing."
            )
        if e.uncredited_rows:
            sentence += (
                f" {_rows(e.uncredited_rows).capitalize()} repeat rows already credited (rows of "
                "a dataset listed earlier, or its own repeated) and earned nothing."
            )
        sentences[e.listing_id] = sentence
    return sentences


def run_detail(run: TrainingRun) -> dict:
    # .all() so that a prefetch of inputs__dataset (lists of runs) is used.
    inputs = sorted(run.inputs.all(), key=lambda entry: entry.position)
    sentences = payout_sentences(run, inputs)
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "stage": run.stage,
        "progress": run.progress,
        "stages": [
            {
                "name": name,
                "label": label,
                "done": name in run.stages_done or run.status == "completed",
                "current": name == run.stage,
            }
            for name, label, _ in STAGES
        ],
        "job_id": "0x" + run.job_id,
        "task": run.task,
        "model": run.model,
        "target_column": run.target_column,
        "test_fraction": run.test_fraction,
        "seed": run.seed,
        "dp_epsilon": run.dp_epsilon,
        "curate": run.curate,
        # Keyed by dataset id here (the report keys them by listing id).
        "excluded_rows": (
            {str(e.dataset_id): e.excluded_rows or 0 for e in inputs} if run.report else None
        ),
        "differential_privacy": run.report.get("differential_privacy"),
        "membership_inference_auc": run.report.get("membership_inference_auc"),
        "price_wei": str(run.price_wei),
        "compute_fee_wei": str(run.compute_fee_wei),
        "funded_value_wei": None if run.funded_value_wei is None else str(run.funded_value_wei),
        "fee_wei": None if run.fee_wei is None else str(run.fee_wei),
        "funding_tx": run.funding_tx,
        "metrics": run.metrics,
        "figures": run.figures,
        "contributions": [
            {
                "dataset": e.dataset_id,
                "title": e.dataset.title,
                "listing_id": e.listing_id,
                "owner": e.owner_address,
                "price_wei": str(e.price_wei),
                "contribution": e.contribution,
                "amount_wei": None if e.amount_wei is None else str(e.amount_wei),
                "excluded_rows": e.excluded_rows,
                "uncredited_rows": e.uncredited_rows,
                "payout_explanation": sentences.get(e.listing_id, ""),
            }
            for e in inputs
        ],
        "model_cid": run.model_cid,
        "model_fingerprint": run.report.get("model_fingerprint"),
        "model_card": model_card(run),
        "privacy": run.report.get("privacy"),
        "report_hash": run.report_hash,
        **run_attestations(run),
        "settlement_tx": run.settlement_tx,
        "settlement_block": run.settlement_block,
        "refund_tx": run.refund_tx,
        "error": run.error,
        "created": run.created.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def model_card(run: TrainingRun) -> str:
    """The model card of a run with a report (empty before): the report's figures and the
    run's number."""
    from training.artifacts import model_card as card

    if not run.report:
        return ""
    return card(
        run={
            "id": run.pk, "task": run.task, "target": run.target_column, "model": run.model,
            "test_fraction": run.test_fraction, "seed": run.seed, "job_id": "0x" + run.job_id,
            "chain_id": run.report.get("chain_id", settings.CHAIN_ID),
        },
        report=run.report,
    )  # fmt: skip


def run_model_bytes(run: TrainingRun) -> bytes:
    """The trained model (skops), fetched from IPFS, checked against the recorded ciphertext
    hash, decrypted, and checked against the fingerprint of the settled report."""
    from training.lineage import model_fingerprint_matches

    model = run_model_plaintext(run)
    if not model_fingerprint_matches(model, run.report):
        raise ApplicationError(
            "The model does not match the fingerprint in the run's report.",
            {"code": "fingerprint_mismatch"}, status_code=502,
        )  # fmt: skip
    return model


def run_model_plaintext(run: TrainingRun) -> bytes:
    """The trained model's bytes, fetched from IPFS, checked and decrypted."""
    from marketplace.crypto import iter_decrypt, unwrap_data_key
    from marketplace.ipfs import iter_cat

    if run.status != TrainingRun.Status.COMPLETED or not run.model_cid:
        raise ApplicationError(
            "The model is not ready yet.", {"code": "not_ready"}, status_code=409
        )
    sealed = b"".join(iter_cat(run.model_cid))
    if hashlib.sha256(sealed).hexdigest() != run.model_sha256:
        raise ApplicationError(
            "The model's bytes on IPFS do not match the recorded hash.", {"code": "hash_mismatch"},
            status_code=502,
        )  # fmt: skip
    key = unwrap_data_key(
        run.wrapped_model_key, settings.MASTER_KEY, context=f"model:{run.job_id}".encode()
    )
    return b"".join(iter_decrypt(io.BytesIO(sealed), key))
