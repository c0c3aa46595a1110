"""Earnings: what the escrow credited to contributors and what they withdrew, recorded from the
contract's events (by the indexer, and right after our own settlements), and read back per
dataset. The withdrawable balance always comes from the contract, not from these records."""

from __future__ import annotations

from django.core.paginator import Paginator
from web3 import Web3

from chain.events import ChainEvent
from chain.wrappers import TrainingEscrow
from marketplace.errors import ApplicationError
from marketplace.models import User
from training.models import Earning, TrainingRun, TrainingRunDataset, Withdrawal

ENTRIES_PER_PAGE = 20


def _timestamp(w3: Web3, block_number: int, cache: dict[int, int]) -> int:
    if block_number not in cache:
        cache[block_number] = w3.eth.get_block(block_number)["timestamp"]
    return cache[block_number]


def _upsert(model, event: ChainEvent, timestamps: dict, w3: Web3, **fields) -> None:
    model.record_once(
        tx_hash=event.tx_hash, log_index=event.log_index, block_number=event.block_number,
        block_timestamp=_timestamp(w3, event.block_number, timestamps), **fields,
    )  # fmt: skip


def earning_record(w3: Web3, event: ChainEvent, timestamps: dict | None = None) -> None:
    """Indexer handler for PayeeCredited."""
    job_id = event.args["jobId"].removeprefix("0x")
    _upsert(
        Earning, event, {} if timestamps is None else timestamps, w3,
        payee=Web3.to_checksum_address(event.args["payee"]), job_id=job_id,
        run=TrainingRun.objects.filter(job_id=job_id).first(), amount_wei=event.args["amount"],
    )  # fmt: skip


def withdrawal_record(w3: Web3, event: ChainEvent, timestamps: dict | None = None) -> None:
    """Indexer handler for Withdrawn."""
    _upsert(
        Withdrawal, event, {} if timestamps is None else timestamps, w3,
        account=Web3.to_checksum_address(event.args["account"]), amount_wei=event.args["amount"],
    )  # fmt: skip


def withdrawal_hint(*, user: User, tx_hash: str) -> None:
    """The user's page says it withdrew in `tx_hash`: record that receipt's Withdrawn event now."""
    from chain.events import events_of_mined_transaction

    w3, events = events_of_mined_transaction(tx_hash)
    withdrawn = [e for e in events if e.name == "Withdrawn" and e.args["account"] == user.address]
    if not withdrawn:
        raise ApplicationError(
            "That transaction is not a withdrawal of yours.", {"code": "not_yours"}
        )
    withdrawal_record(w3, withdrawn[0])


def _entries(earnings: list[Earning], payee: str) -> list[dict]:
    """Each credit with the dataset it paid for: the escrow credits a dataset's owner once per
    dataset, in the run's dataset order, so a run's credits pair with the payee's datasets."""
    runs = {e.run_id for e in earnings if e.run_id}
    rows: dict[int, list[TrainingRunDataset]] = {}
    for row in (
        TrainingRunDataset.objects.filter(run_id__in=runs, owner_address=payee)
        .select_related("dataset")
        .order_by("position")
    ):
        rows.setdefault(row.run_id, []).append(row)
    credits: dict[int, list[Earning]] = {}
    for earning in sorted(earnings, key=lambda e: (e.block_number, e.log_index)):
        credits.setdefault(earning.run_id, []).append(earning)
    entries = []
    for earning in earnings:
        common = {
            "run_id": earning.run_id,
            "tx_hash": earning.tx_hash,
            "block": earning.block_number,
            "at": earning.block_timestamp,
        }
        parts = rows.get(earning.run_id, [])
        of_run = credits.get(earning.run_id, [])
        if parts and len(of_run) == len(parts):
            part = parts[of_run.index(earning)]
            if int(part.amount_wei or 0) == earning.amount_wei:
                parts = [part]
        if parts and sum(int(p.amount_wei or 0) for p in parts) == earning.amount_wei:
            entries.extend(
                {**common, "dataset_id": p.dataset_id, "dataset_title": p.dataset.title,
                 "amount_wei": str(p.amount_wei), "excluded_rows": p.excluded_rows or 0,
                 "uncredited_rows": p.uncredited_rows or 0}
                for p in parts
            )  # fmt: skip
        else:
            entries.append(
                {
                    **common,
                    "dataset_id": None,
                    "dataset_title": "",
                    "amount_wei": str(earning.amount_wei),
                    "excluded_rows": 0,
                    "uncredited_rows": 0,
                }
            )
    return entries


def earnings_for(user: User, *, page: int = 1) -> dict:
    address = user.address
    escrow = TrainingEscrow.deployed()
    earnings = list(Earning.objects.filter(payee=address))
    withdrawals = list(Withdrawal.objects.filter(account=address))
    entries = _entries(earnings, address)
    paginator = Paginator(entries, ENTRIES_PER_PAGE)
    current = paginator.get_page(page)
    per_dataset: dict = {}
    for entry in entries:
        key = entry["dataset_id"]
        total = per_dataset.setdefault(
            key,
            {
                "dataset_id": key,
                "dataset_title": entry["dataset_title"],
                "runs": set(),
                "amount_wei": 0,
            },
        )
        total["runs"].add(entry["run_id"])
        total["amount_wei"] += int(entry["amount_wei"])
    withdrawable = escrow.balance_of(address)
    timeline, running = [], 0
    for earning in sorted(earnings, key=lambda e: (e.block_number, e.log_index)):
        running += earning.amount_wei
        timeline.append({"at": earning.block_timestamp, "total_wei": str(running)})
    return {
        "address": address,
        "withdrawable_wei": str(withdrawable),
        "total_earned_wei": str(sum(e.amount_wei for e in earnings)),
        "withdrawn_wei": str(sum(w.amount_wei for w in withdrawals)),
        "count": paginator.count,
        "page": current.number,
        "pages": paginator.num_pages,
        "entries": list(current.object_list),
        "per_dataset": [
            {**t, "runs": len(t["runs"]), "amount_wei": str(t["amount_wei"])}
            for t in per_dataset.values()
        ],
        "withdrawals": [
            {
                "amount_wei": str(w.amount_wei),
                "tx_hash": w.tx_hash,
                "block": w.block_number,
                "at": w.block_timestamp,
            }
            for w in withdrawals
        ],
        "timeline": timeline,
        "withdraw": escrow.withdraw_request().as_json() if withdrawable > 0 else None,
    }
