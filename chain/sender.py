"""The one transaction sender per operator key.

Nonces are assigned under a database row lock (so web and worker processes never reuse one), each
signed transaction is stored before it is broadcast, and an intent is sent at most once: a retry
finds the stored transaction and re-broadcasts, replaces or waits for it instead of signing a new
one at another nonce.

A broadcast the node rejects releases its nonce (the record is deleted, so the next transaction
takes the nonce and a retry of the intent signs afresh). A transaction the node forgot is
re-broadcast; one pending for longer than `CHAIN_TX_REPLACE_AFTER_SECONDS` is replaced at the same
nonce with higher fees, and every hash the intent had counts when its receipt is looked for.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from chain.models import ChainTransaction, SenderAccount
from marketplace.config import SettingError, env_private_key

logger = logging.getLogger(__name__)

RECEIPT_TIMEOUT_SECONDS = 120
PRIORITY_FEE_GWEI = 1
# Node messages meaning "this transaction was broadcast before, or its nonce is already mined".
_ALREADY_SENT = ("already known", "already imported", "known transaction", "alreadyknown")
_NONCE_USED = ("nonce too low", "nonce is too low", "oldnonce")
_IN_FLIGHT = (ChainTransaction.Status.SIGNED, ChainTransaction.Status.SENT)


class TransactionRejected(Exception):
    """The node refused the intent's transaction; its nonce is released and nothing was sent."""

    def __init__(self, *, intent: str, nonce: int, reason: str):
        super().__init__(
            f"The node rejected the transaction for {intent} (nonce {nonce}): {reason}. "
            "Nothing was sent; sending the intent again signs a new transaction."
        )
        self.intent = intent
        self.nonce = nonce
        self.reason = reason


class TransactionPending(Exception):
    """The intent's transaction is not mined yet; sending the intent again keeps waiting for it."""

    def __init__(self, *, intent: str, tx_hash: str, waited_seconds: float):
        super().__init__(
            f"Transaction {tx_hash} for {intent} is still pending after {waited_seconds:g} s."
        )
        self.intent = intent
        self.tx_hash = tx_hash


@dataclass(frozen=True)
class SentTransaction:
    record: ChainTransaction
    receipt: TxReceipt

    @property
    def succeeded(self) -> bool:
        return self.receipt["status"] == 1


def _rpc_reason(exc: Web3RPCError) -> str:
    error = (exc.rpc_response or {}).get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(exc.message)


def _fee_bump(fee: int) -> int:
    # Nodes accept a replacement only if both fees rise by at least 10% (geth) or 12.5% (others).
    return fee + fee // 8 + 1


class TransactionSender:
    def __init__(self, w3: Web3, private_key: str, *, replace_after_seconds: float | None = None):
        self.w3 = w3
        self._account = Account.from_key(private_key)
        self.address = self._account.address
        self.chain_id = w3.eth.chain_id
        self.replace_after_seconds = (
            settings.CHAIN_TX_REPLACE_AFTER_SECONDS
            if replace_after_seconds is None
            else replace_after_seconds
        )

    def send(
        self,
        *,
        intent: str,
        to: str | None,
        data: str,
        value: int = 0,
        gas: int | None = None,
        wait_seconds: float = RECEIPT_TIMEOUT_SECONDS,
    ) -> SentTransaction:
        """Send `data` to `to` (None deploys a contract) once for `intent`, and wait until mined.

        A revert during gas estimation raises the web3 exception before any nonce is used.
        Raises TransactionRejected if the node refuses the transaction (its nonce is released),
        and TransactionPending if it is not mined within `wait_seconds`.
        """
        record = ChainTransaction.objects.filter(chain_id=self.chain_id, intent=intent).first()
        if record is None:
            call = {"from": self.address, "data": data, "value": value}
            if to is not None:
                call["to"] = to
            gas = gas or int(self.w3.eth.estimate_gas(call) * 1.2) + 10_000
            try:
                record = self._sign_and_record(
                    intent=intent, to=to, data=data, value=value, gas=gas
                )
            except IntegrityError:
                # Another process recorded this intent first: follow its transaction.
                record = ChainTransaction.objects.get(chain_id=self.chain_id, intent=intent)
        return SentTransaction(record, self._broadcast_and_wait(record, wait_seconds))

    def _sign_and_record(
        self, *, intent: str, to: str | None, data: str, value: int, gas: int
    ) -> ChainTransaction:
        SenderAccount.objects.get_or_create(chain_id=self.chain_id, address=self.address)
        with transaction.atomic():
            account = SenderAccount.objects.select_for_update().get(
                chain_id=self.chain_id, address=self.address
            )
            on_chain = self.w3.eth.get_transaction_count(self.address, "pending")
            held = set(
                ChainTransaction.objects.filter(
                    chain_id=self.chain_id,
                    sender=self.address,
                    status__in=_IN_FLIGHT,
                    nonce__gte=on_chain,
                ).values_list("nonce", flat=True)
            )
            # The lowest nonce no recorded transaction holds: a released nonce is taken again.
            nonce = on_chain
            while nonce in held:
                nonce += 1
            priority = self.w3.to_wei(PRIORITY_FEE_GWEI, "gwei")
            tx = {
                "chainId": self.chain_id,
                "nonce": nonce,
                "gas": gas,
                "maxPriorityFeePerGas": priority,
                "maxFeePerGas": 2 * self._base_fee() + priority,
                "value": value,
                "data": data,
            }
            if to is not None:
                tx["to"] = Web3.to_checksum_address(to)
            signed = self._account.sign_transaction(tx)
            record = ChainTransaction.objects.create(
                chain_id=self.chain_id,
                intent=intent,
                sender=self.address,
                nonce=nonce,
                to=tx.get("to", ""),
                value_wei=value,
                raw=signed.raw_transaction.to_0x_hex(),
                tx_hash=signed.hash.to_0x_hex(),
            )
            account.next_nonce = max(account.next_nonce, nonce + 1)
            account.save(update_fields=["next_nonce"])
        return record

    def _base_fee(self) -> int:
        latest = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
        try:
            pending = self.w3.eth.get_block("pending").get("baseFeePerGas", 0)
        except Web3RPCError:
            pending = 0
        return max(latest, pending)

    def _broadcast_and_wait(self, record: ChainTransaction, wait_seconds: float) -> TxReceipt:
        started = time.monotonic()
        if record.status == ChainTransaction.Status.SIGNED:
            self._broadcast(record)
            ChainTransaction.objects.filter(
                pk=record.pk, status=ChainTransaction.Status.SIGNED
            ).update(status=ChainTransaction.Status.SENT, sent_at=timezone.now())
        poll = 0.1
        while True:
            record = self._current(record)
            receipt = self._receipt(record)
            if receipt is not None:
                return self._record_receipt(record, receipt)
            if not self._node_knows(record.tx_hash):
                self._rebroadcast(record)
            elif self._overdue(record):
                self._replace(record)
            if time.monotonic() - started >= wait_seconds:
                raise TransactionPending(
                    intent=record.intent, tx_hash=record.tx_hash, waited_seconds=wait_seconds
                )
            time.sleep(poll)
            poll = min(poll * 1.5, 1.0)

    def _current(self, record: ChainTransaction) -> ChainTransaction:
        """The record as stored now: another process may have replaced or released it."""
        try:
            record.refresh_from_db()
        except ChainTransaction.DoesNotExist:
            raise TransactionRejected(
                intent=record.intent, nonce=record.nonce, reason="released by another attempt"
            ) from None
        return record

    def _broadcast(self, record: ChainTransaction) -> None:
        try:
            self.w3.eth.send_raw_transaction(HexBytes(record.raw))
        except Web3RPCError as exc:
            reason = _rpc_reason(exc)
            if any(text in reason.lower() for text in _ALREADY_SENT + _NONCE_USED):
                # Broadcast before, or its nonce is mined: the receipt decides.
                logger.info("broadcast of %s refused: %s", record.tx_hash, reason)
                return
            if any(self._node_knows(h) for h in record.replaced_hashes):
                # An earlier transaction of this intent is still pending and holds the nonce.
                logger.warning("broadcast of %s refused: %s", record.tx_hash, reason)
                return
            if self._release(record):
                raise TransactionRejected(
                    intent=record.intent, nonce=record.nonce, reason=reason
                ) from exc

    def _rebroadcast(self, record: ChainTransaction) -> None:
        """The node does not know the current transaction: send it again, unless its nonce
        was taken by a transaction that is not this intent's."""
        if self.w3.eth.get_transaction_count(self.address, "latest") > record.nonce:
            if self._receipt(record) is None and self._release(record):
                raise TransactionRejected(
                    intent=record.intent,
                    nonce=record.nonce,
                    reason="another transaction was mined at this nonce",
                )
            return
        logger.info("re-broadcasting %s, which the node no longer knows", record.tx_hash)
        self._broadcast(record)

    def _overdue(self, record: ChainTransaction) -> bool:
        since = record.sent_at or record.created
        return timezone.now() - since >= timedelta(seconds=self.replace_after_seconds)

    def _replace(self, record: ChainTransaction) -> None:
        """Sign the same transaction at the same nonce with higher fees, store it, broadcast it."""
        old = TypedTransaction.from_bytes(HexBytes(record.raw)).as_dict()
        priority = max(
            _fee_bump(old["maxPriorityFeePerGas"]), self.w3.to_wei(PRIORITY_FEE_GWEI, "gwei")
        )
        tx = {
            "chainId": self.chain_id,
            "nonce": record.nonce,
            "gas": old["gas"],
            "maxPriorityFeePerGas": priority,
            "maxFeePerGas": max(_fee_bump(old["maxFeePerGas"]), 2 * self._base_fee() + priority),
            "value": old["value"],
            "data": old["data"],
        }
        if old.get("to"):
            tx["to"] = Web3.to_checksum_address(old["to"])
        signed = self._account.sign_transaction(tx)
        new_hash = signed.hash.to_0x_hex()
        previous = {
            "tx_hash": record.tx_hash,
            "raw": record.raw,
            "replaced_hashes": record.replaced_hashes,
        }
        # Stored before it is broadcast, so whichever of the hashes is mined is found.
        moved = ChainTransaction.objects.filter(
            pk=record.pk, tx_hash=record.tx_hash, status=ChainTransaction.Status.SENT
        ).update(
            tx_hash=new_hash,
            raw=signed.raw_transaction.to_0x_hex(),
            replaced_hashes=[*record.replaced_hashes, record.tx_hash],
            sent_at=timezone.now(),
        )
        if not moved:
            return
        logger.info("replacing %s with %s at nonce %s", record.tx_hash, new_hash, record.nonce)
        try:
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Web3RPCError as exc:
            reason = _rpc_reason(exc)
            if any(text in reason.lower() for text in _ALREADY_SENT + _NONCE_USED):
                return
            # The earlier transaction still stands; the next attempt waits a full interval.
            logger.warning("replacement %s refused: %s", new_hash, reason)
            ChainTransaction.objects.filter(pk=record.pk, tx_hash=new_hash).update(**previous)

    def _release(self, record: ChainTransaction) -> bool:
        """Delete the record of a transaction that can no longer be mined, freeing its nonce."""
        with transaction.atomic():
            account = SenderAccount.objects.select_for_update().get(
                chain_id=self.chain_id, address=self.address
            )
            deleted, _ = ChainTransaction.objects.filter(
                pk=record.pk, tx_hash=record.tx_hash, status__in=_IN_FLIGHT
            ).delete()
            if deleted and account.next_nonce == record.nonce + 1:
                account.next_nonce = record.nonce
                account.save(update_fields=["next_nonce"])
        if deleted:
            logger.warning("released nonce %s of %s (%s)", record.nonce, record.intent, record)
        return bool(deleted)

    def _node_knows(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True

    def _receipt(self, record: ChainTransaction) -> TxReceipt | None:
        for tx_hash in [record.tx_hash, *record.replaced_hashes]:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                continue
        return None

    def _record_receipt(self, record: ChainTransaction, receipt: TxReceipt) -> TxReceipt:
        mined = receipt["transactionHash"].to_0x_hex()
        status = (
            ChainTransaction.Status.MINED
            if receipt["status"] == 1
            else ChainTransaction.Status.REVERTED
        )
        hashes = [record.tx_hash, *record.replaced_hashes]
        ChainTransaction.objects.filter(pk=record.pk).update(
            status=status,
            tx_hash=mined,
            replaced_hashes=[h for h in hashes if h != mined],
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            contract_address=receipt.get("contractAddress") or "",
        )
        record.refresh_from_db()
        return receipt


@functools.cache
def _dev_key(index: int) -> str:
    from marketplace.devstack import dev_private_key

    return dev_private_key(index)


def signing_key(role: str) -> str:
    """The private key of `role` ("operator" or "admin"), read from the environment when a sender
    is built, so only processes that sign (the workers, deploys) ever load one."""
    name = settings.SIGNING_KEY_SETTINGS[role]
    if os.environ.get(name):
        return env_private_key(name, None)
    index = settings.SIGNING_KEY_DEV_ACCOUNTS.get(role)
    if index is None:
        raise SettingError(
            f"{name} is not set: the {role} key is required where transactions are signed "
            "(the Celery workers and the deploy command)"
        )
    return _dev_key(index)


def operator_sender(w3: Web3) -> TransactionSender:
    """The sender for the operator key (relays listings, settles and refunds jobs); nonces are
    serialised in the database, so every worker process may build its own."""
    return TransactionSender(w3, signing_key("operator"))


def admin_sender(w3: Web3) -> TransactionSender:
    """The sender for the admin key (deploys contracts; escrow fees and roles)."""
    return TransactionSender(w3, signing_key("admin"))


def signing_address(role: str) -> str:
    return Account.from_key(signing_key(role)).address
