"""The chain indexer: reads our contracts' logs in bounded block ranges from the last processed
block, a confirmation depth behind the head, and hands each decoded event to the handlers the
apps registered. Handlers upsert on (tx_hash, log_index), so a range read twice changes nothing.
A log that cannot be decoded or applied is recorded as a SkippedEvent and the range goes on.

A reorganisation deeper than the confirmation depth shows as a processed block whose hash
changed: the indexer goes back to the newest processed range end whose hash still matches,
forgets the records of logs that are no longer on the chain above it, and reads on from there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from django.apps import apps
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from chain.client import deployed_addresses
from chain.events import ChainEvent, decode_log, logs_between
from chain.models import EventRecord, IndexerCursor, SkippedEvent
from marketplace.errors import NodeUnavailable

logger = logging.getLogger(__name__)

EventHandler = Callable[[Web3, ChainEvent], None]
_handlers: dict[str, list[EventHandler]] = defaultdict(list)
# Called with the last block still on the chain after a reorganisation, to undo what the apps
# derived from later blocks (EventRecord rows are taken care of here).
ReorgHandler = Callable[[Web3, int], None]
_reorg_handlers: list[ReorgHandler] = []


def register_handler(event_name: str, handler: EventHandler) -> None:
    if handler not in _handlers[event_name]:
        _handlers[event_name].append(handler)


def register_reorg_handler(handler: ReorgHandler) -> None:
    if handler not in _reorg_handlers:
        _reorg_handlers.append(handler)


def handle_events(w3: Web3, events: list[ChainEvent]) -> None:
    for event in events:
        for handler in _handlers.get(event.name, []):
            handler(w3, event)


# Errors that say "try this range again later", not "this log is bad": the tick rolls back.
_TRANSIENT = (NodeUnavailable, OperationalError, InterfaceError)


def _index_log(w3: Web3, log, addresses: dict[str, str]) -> ChainEvent | None:
    """Decode and apply one log in a savepoint; a log that cannot be decoded or applied is
    recorded as skipped (its partial writes rolled back) and the indexer goes on."""
    event = None
    try:
        with transaction.atomic():
            event = decode_log(w3, log, addresses)
            if event is not None:
                handle_events(w3, [event])
        return event
    except _TRANSIENT:
        raise
    except Exception as exc:  # anyone can emit a log our code cannot take: never stop on it
        tx_hash = bytes(log["transactionHash"]).hex()
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        logger.warning("skipped log %s#%s: %s", tx_hash, log["logIndex"], reason)
        SkippedEvent.objects.get_or_create(
            chain_id=settings.CHAIN_ID,
            tx_hash="0x" + tx_hash.removeprefix("0x"),
            log_index=log["logIndex"],
            defaults={
                "block_number": log["blockNumber"],
                "contract": event.contract if event else _emitter(log, addresses),
                "event": event.name if event else "",
                "reason": reason,
            },
        )
        return None


def _emitter(log, addresses: dict[str, str]) -> str:
    emitter = Web3.to_checksum_address(log["address"])
    names = [n for n, a in addresses.items() if Web3.to_checksum_address(a) == emitter]
    return names[0] if names else emitter


def chain_index(*, w3: Web3) -> int:
    """Process the next range of confirmed blocks; returns how many blocks it covered (0 when
    caught up). Concurrent ticks are serialised on the cursor row."""
    addresses = deployed_addresses()
    if not addresses:
        return 0
    head = w3.eth.block_number - settings.CHAIN_CONFIRMATIONS
    IndexerCursor.objects.get_or_create(chain_id=settings.CHAIN_ID)
    with transaction.atomic():
        cursor = IndexerCursor.objects.select_for_update().get(chain_id=settings.CHAIN_ID)
        if cursor.last_block < 0:
            # Nothing of ours exists before the first deployment.
            cursor.last_block = min(_deployment_blocks()) - 1
        rewound = _rewind_past_reorg(w3, cursor)
        start = cursor.last_block + 1
        end = min(head, start + settings.CHAIN_LOG_RANGE_BLOCKS - 1)
        # Taken before the logs: if the chain changes meanwhile, the next tick sees it.
        end_hash = _block_hash(w3, end) if end >= start else None
        if end_hash is None:
            if rewound:
                cursor.save(update_fields=["last_block", "block_hashes", "updated"])
            return 0
        logs = logs_between(w3, address=list(addresses.values()), from_block=start, to_block=end)
        events = [e for e in (_index_log(w3, log, addresses) for log in logs) if e is not None]
        cursor.processed(end, end_hash)
        cursor.save(update_fields=["last_block", "block_hashes", "updated"])
    if events:
        logger.info("indexed %d events in blocks %d-%d", len(events), start, end)
    return end - start + 1


def _block_hash(w3: Web3, number: int) -> str | None:
    """The hash of the chain's block `number` now (None: the chain is not that long)."""
    try:
        return w3.eth.get_block(number)["hash"].to_0x_hex()
    except BlockNotFound:
        return None


def _rewind_past_reorg(w3: Web3, cursor: IndexerCursor) -> bool:
    """If the last processed block is no longer on the chain, move the cursor back to the newest
    processed range end that still is (or before our deployment when none is) and forget what was
    recorded from the blocks above it. Returns whether it moved the cursor."""
    recorded = cursor.last_block_hash
    if not recorded or _block_hash(w3, cursor.last_block) == recorded:
        return False
    orphaned_from = cursor.last_block
    fork = next((n for n, h in reversed(cursor.block_hashes[:-1]) if _block_hash(w3, n) == h), None)
    if fork is None:
        fork = min(_deployment_blocks()) - 1
        logger.error(
            "block %d was replaced, and none of the %d last processed blocks is still on the "
            "chain: indexing again from our deployment",
            orphaned_from,
            len(cursor.block_hashes),
        )
    else:
        logger.warning(
            "reorganisation below the confirmation depth: block %d was replaced; indexing "
            "again from block %d",
            orphaned_from,
            fork + 1,
        )
    _forget_orphaned(w3, fork)
    cursor.block_hashes = [pair for pair in cursor.block_hashes if pair[0] <= fork]
    cursor.last_block = fork
    return True


def _forget_orphaned(w3: Web3, fork: int) -> None:
    """Delete the records of logs above block `fork` that the chain no longer holds there: the
    logs still on it are recorded again when their blocks are read again."""
    SkippedEvent.objects.filter(chain_id=settings.CHAIN_ID, block_number__gt=fork).delete()
    hashes: dict[int, str | None] = {}
    receipts: dict[str, object] = {}

    def still_on_chain(tx_hash: str, log_index: int, block_number: int) -> bool:
        if tx_hash not in receipts:
            try:
                receipts[tx_hash] = w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                receipts[tx_hash] = None
        receipt = receipts[tx_hash]
        if receipt is None or receipt["blockNumber"] != block_number:
            return False
        if block_number not in hashes:
            hashes[block_number] = _block_hash(w3, block_number)
        return receipt["blockHash"].to_0x_hex() == hashes[block_number] and any(
            log["logIndex"] == log_index for log in receipt["logs"]
        )

    for model in apps.get_models():
        if not issubclass(model, EventRecord):
            continue
        rows = model.objects.filter(block_number__gt=fork)
        orphaned = [
            pk
            for pk, tx_hash, log_index, block_number in rows.values_list(
                "pk", "tx_hash", "log_index", "block_number"
            )
            if not still_on_chain(tx_hash, log_index, block_number)
        ]
        if orphaned:
            model.objects.filter(pk__in=orphaned).delete()
            logger.warning(
                "forgot %d %s rows of logs no longer on the chain",
                len(orphaned),
                model._meta.verbose_name,
            )
    for handler in _reorg_handlers:
        handler(w3, fork)


def chain_index_catch_up(*, w3: Web3, max_ranges: int = 20) -> None:
    for _ in range(max_ranges):
        if chain_index(w3=w3) == 0:
            return


def _deployment_blocks() -> list[int]:
    from chain.models import Deployment

    return list(
        Deployment.objects.filter(chain_id=settings.CHAIN_ID).values_list("block_number", flat=True)
    )
