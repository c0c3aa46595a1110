"""Reading our contracts' logs in bounded block ranges, and decoding them into plain records the
rest of the app uses."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from django.conf import settings
from eth_utils import event_abi_to_log_topic
from web3 import Web3
from web3._utils.events import get_event_data
from web3.contract.contract import ContractEvent
from web3.exceptions import TransactionNotFound, Web3Exception

from chain.client import PRODUCT_CONTRACTS, load_artifact
from marketplace.errors import NodeUnavailable

logger = logging.getLogger(__name__)

# How providers word "this eth_getLogs asks for too much" (there is no standard error code).
_RANGE_REFUSAL_WORDS = ("range", "limit", "too many", "too large", "exceed")


def _range_refused(exc: Exception) -> bool:
    if isinstance(exc, NodeUnavailable):  # the node is not there: retry later, not smaller
        return False
    if not isinstance(exc, (ValueError, Web3Exception, requests.HTTPError)):
        return False
    message = str(exc).lower()
    return any(word in message for word in _RANGE_REFUSAL_WORDS)


def block_number_of(w3: Web3, block: int | str) -> int:
    """`block` as a number ("latest", "safe", "finalized"... resolved on the node now)."""
    if isinstance(block, int):
        return block
    if block == "latest":
        return w3.eth.block_number
    return w3.eth.get_block(block)["number"]


def block_time(w3: Web3, block_number: int) -> datetime:
    """When the chain says block `block_number` was made: the time of what happened in it."""
    return datetime.fromtimestamp(w3.eth.get_block(block_number)["timestamp"], tz=UTC)


def logs_between(
    w3: Web3,
    *,
    from_block: int,
    to_block: int | str = "latest",
    event: ContractEvent | None = None,
    argument_filters: dict | None = None,
    address: str | list[str] | None = None,
    topics: list | None = None,
    first_only: bool = False,
    newest_first: bool = False,
) -> list:
    """The logs between two blocks (both included), read in requests of at most
    CHAIN_LOG_RANGE_BLOCKS blocks, as public RPC providers refuse larger ranges; a range the
    provider still refuses as too large is halved, down to one block.

    With `event` (a contract's event, e.g. `contract.events.JobFunded`), its decoded logs matching
    `argument_filters`; otherwise the raw logs of `address` matching `topics`. `first_only` stops
    at the first range that holds a match; `newest_first` reads the ranges from `to_block` down
    (the logs of each range stay in chain order)."""
    end = block_number_of(w3, to_block)
    if end < from_block:
        return []

    def read(start: int, stop: int) -> list:
        if event is not None:
            return list(
                event.get_logs(
                    argument_filters=argument_filters or {}, from_block=start, to_block=stop
                )
            )
        params: dict = {"fromBlock": start, "toBlock": stop}
        if address is not None:
            params["address"] = address
        if topics is not None:
            params["topics"] = topics
        return list(w3.eth.get_logs(params))

    span = settings.CHAIN_LOG_RANGE_BLOCKS
    found: list = []
    low, high = from_block, end  # the blocks not read yet
    while low <= high:
        if newest_first:
            start, stop = max(low, high - span + 1), high
        else:
            start, stop = low, min(high, low + span - 1)
        try:
            logs = read(start, stop)
        except Exception as exc:
            if stop == start or not _range_refused(exc):
                raise
            span = max(1, (stop - start + 1) // 2)
            logger.info("the node refused logs of blocks %d-%d; reading %d at a time: %s",
                        start, stop, span, exc)  # fmt: skip
            continue
        if newest_first:
            found = logs + found
            high = start - 1
        else:
            found.extend(logs)
            low = stop + 1
        if first_only and logs:
            break
    return found


@dataclass(frozen=True)
class ChainEvent:
    contract: str  # e.g. "TrainingEscrow"
    name: str  # e.g. "JobSettled"
    args: dict
    address: str
    tx_hash: str
    log_index: int
    block_number: int

    @property
    def key(self) -> tuple[str, int]:
        """Unique per log: what the indexer upserts on."""
        return (self.tx_hash, self.log_index)


@functools.cache
def _event_abis() -> dict[bytes, list[tuple[str, dict]]]:
    by_topic: dict[bytes, list[tuple[str, dict]]] = {}
    for contract in PRODUCT_CONTRACTS:
        for item in load_artifact(contract)["abi"]:
            if item["type"] == "event":
                by_topic.setdefault(event_abi_to_log_topic(item), []).append((contract, item))
    return by_topic


def _plain(value):
    """ABI values as JSON-friendly values (bytes as 0x hex)."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def decode_log(w3: Web3, log, addresses: dict[str, str]) -> ChainEvent | None:
    """The event behind `log` if one of our contracts (`addresses`: name -> address) emitted it."""
    if not log["topics"]:
        return None
    emitter = Web3.to_checksum_address(log["address"])
    for contract, abi in _event_abis().get(bytes(log["topics"][0]), []):
        if Web3.to_checksum_address(addresses.get(contract, "0x" + "00" * 20)) != emitter:
            continue
        data = get_event_data(w3.codec, abi, log)
        return ChainEvent(
            contract=contract,
            name=data["event"],
            args={k: _plain(v) for k, v in data["args"].items()},
            address=emitter,
            tx_hash=data["transactionHash"].to_0x_hex(),
            log_index=data["logIndex"],
            block_number=data["blockNumber"],
        )
    return None


def decode_receipt(w3: Web3, receipt, addresses: dict[str, str]) -> list[ChainEvent]:
    events = (decode_log(w3, log, addresses) for log in receipt["logs"])
    return [event for event in events if event is not None]


def events_of_mined_transaction(tx_hash: str) -> tuple[Web3, list[ChainEvent]]:
    """Our contracts' events in a transaction a user points us to (a payment or a withdrawal
    made from their wallet), so we need not wait for the indexer. 4xx when the hash is
    malformed or the transaction is not mined yet."""
    from chain.client import deployed_addresses, get_web3
    from marketplace.errors import ApplicationError

    if not isinstance(tx_hash, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", tx_hash):
        raise ApplicationError(
            "The transaction hash is malformed: expected 0x and 64 hex digits.",
            {"code": "bad_tx_hash"},
        )
    w3 = get_web3()
    try:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        raise ApplicationError(
            "That transaction is not mined yet; try again in a moment.",
            {"code": "not_mined"},
            status_code=409,
        ) from None
    return w3, decode_receipt(w3, receipt, deployed_addresses())
