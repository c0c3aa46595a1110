"""The chain indexer: reads our contracts' logs in bounded block ranges from the last processed
block, a confirmation depth behind the head, and hands each decoded event to the handlers the
apps registered. Handlers upsert on (tx_hash, log_index), so a range read twice changes nothing.
A log that cannot be decoded or applied is recorded as a SkippedEvent and the range goes on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from web3 import Web3

from chain.client import deployed_addresses
from chain.events import ChainEvent, decode_log
from chain.models import IndexerCursor, SkippedEvent
from marketplace.errors import NodeUnavailable

logger = logging.getLogger(__name__)

EventHandler = Callable[[Web3, ChainEvent], None]
_handlers: dict[str, list[EventHandler]] = defaultdict(list)


def register_handler(event_name: str, handler: EventHandler) -> None:
    if handler not in _handlers[event_name]:
        _handlers[event_name].append(handler)


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
        start = cursor.last_block + 1
        end = min(head, start + settings.CHAIN_INDEX_MAX_BLOCKS - 1)
        if end < start:
            return 0
        logs = w3.eth.get_logs(
            {"fromBlock": start, "toBlock": end, "address": list(addresses.values())}
        )
        events = [e for e in (_index_log(w3, log, addresses) for log in logs) if e is not None]
        cursor.last_block = end
        cursor.save(update_fields=["last_block", "updated"])
    if events:
        logger.info("indexed %d events in blocks %d-%d", len(events), start, end)
    return end - start + 1


def chain_index_catch_up(*, w3: Web3, max_ranges: int = 20) -> None:
    for _ in range(max_ranges):
        if chain_index(w3=w3) == 0:
            return


def _deployment_blocks() -> list[int]:
    from chain.models import Deployment

    return list(
        Deployment.objects.filter(chain_id=settings.CHAIN_ID).values_list("block_number", flat=True)
    )
