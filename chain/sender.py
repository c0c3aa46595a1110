"""The one transaction sender per operator key.

Nonces are assigned under a database row lock (so web and worker processes never reuse one), each
signed transaction is stored before it is broadcast, and an intent is sent at most once: a retry
finds the stored transaction and re-broadcasts or waits for it instead of signing a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxReceipt

from chain.models import ChainTransaction, SenderAccount

logger = logging.getLogger(__name__)

RECEIPT_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class SentTransaction:
    record: ChainTransaction
    receipt: TxReceipt

    @property
    def succeeded(self) -> bool:
        return self.receipt["status"] == 1


class TransactionSender:
    def __init__(self, w3: Web3, private_key: str):
        self.w3 = w3
        self._account = Account.from_key(private_key)
        self.address = self._account.address
        self.chain_id = w3.eth.chain_id

    def send(
        self, *, intent: str, to: str | None, data: str, value: int = 0, gas: int | None = None
    ) -> SentTransaction:
        """Send `data` to `to` (None deploys a contract) once for `intent`, and wait until mined.

        A revert during gas estimation raises the web3 exception before any nonce is used.
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
        return SentTransaction(record, self._broadcast_and_wait(record))

    def _sign_and_record(
        self, *, intent: str, to: str | None, data: str, value: int, gas: int
    ) -> ChainTransaction:
        SenderAccount.objects.get_or_create(chain_id=self.chain_id, address=self.address)
        with transaction.atomic():
            account = SenderAccount.objects.select_for_update().get(
                chain_id=self.chain_id, address=self.address
            )
            on_chain = self.w3.eth.get_transaction_count(self.address, "pending")
            in_flight = ChainTransaction.objects.filter(
                chain_id=self.chain_id,
                sender=self.address,
                status__in=[ChainTransaction.Status.SIGNED, ChainTransaction.Status.SENT],
            ).exists()
            nonce = max(on_chain, account.next_nonce) if in_flight else on_chain
            base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
            priority = self.w3.to_wei(1, "gwei")
            tx = {
                "chainId": self.chain_id,
                "nonce": nonce,
                "gas": gas,
                "maxPriorityFeePerGas": priority,
                "maxFeePerGas": 2 * base_fee + priority,
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
            account.next_nonce = nonce + 1
            account.save(update_fields=["next_nonce"])
        return record

    def _broadcast_and_wait(self, record: ChainTransaction) -> TxReceipt:
        if record.status == ChainTransaction.Status.SIGNED:
            try:
                self.w3.eth.send_raw_transaction(HexBytes(record.raw))
            except ValueError as exc:
                # "already known" / "nonce too low": it was broadcast before; the receipt decides.
                logger.info("re-broadcast of %s refused: %s", record.tx_hash, exc)
            ChainTransaction.objects.filter(
                pk=record.pk, status=ChainTransaction.Status.SIGNED
            ).update(status=ChainTransaction.Status.SENT)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            record.tx_hash, timeout=RECEIPT_TIMEOUT_SECONDS, poll_latency=0.1
        )
        status = (
            ChainTransaction.Status.MINED
            if receipt["status"] == 1
            else ChainTransaction.Status.REVERTED
        )
        ChainTransaction.objects.filter(pk=record.pk).update(
            status=status,
            block_number=receipt["blockNumber"],
            gas_used=receipt["gasUsed"],
            contract_address=receipt.get("contractAddress") or "",
        )
        record.refresh_from_db()
        return receipt


def operator_sender(w3: Web3) -> TransactionSender:
    """The sender for the configured operator key; nonces are serialised in the database, so
    every process may build its own."""
    from django.conf import settings

    return TransactionSender(w3, settings.OPERATOR_PRIVATE_KEY)
