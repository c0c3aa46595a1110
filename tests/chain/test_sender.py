"""The operator's transaction sender against a real anvil."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound

from chain.client import get_web3
from chain.models import ChainTransaction
from chain.sender import TransactionPending, TransactionRejected, operator_sender, signing_key

RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil dev account 1


def balance(w3: Web3, address: str) -> int:
    return w3.eth.get_balance(address)


def rpc(w3: Web3, method: str, *params) -> object:
    response = w3.provider.make_request(method, list(params))
    assert "error" not in response, response
    return response.get("result")


def mined_hashes(w3: Web3, hashes: list[str]) -> list[str]:
    mined = []
    for tx_hash in hashes:
        try:
            w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            continue
        mined.append(tx_hash)
    return mined


@contextmanager
def mining_paused(w3: Web3) -> Iterator[None]:
    """Automine off; the session's anvil is shared, so it is back on with no pending transaction
    afterwards whatever happens."""
    rpc(w3, "evm_setAutomine", False)
    try:
        yield
    finally:
        rpc(w3, "anvil_dropAllTransactions")
        rpc(w3, "evm_setAutomine", True)


@pytest.mark.django_db
def test_an_intent_is_sent_once(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    before = balance(w3, RECIPIENT)

    first = sender.send(intent="test:pay-once", to=RECIPIENT, data="0x", value=1234)
    again = sender.send(intent="test:pay-once", to=RECIPIENT, data="0x", value=1234)

    assert first.succeeded
    assert again.record.tx_hash == first.record.tx_hash
    assert balance(w3, RECIPIENT) - before == 1234
    record = ChainTransaction.objects.get(intent="test:pay-once")
    assert record.status == ChainTransaction.Status.MINED
    assert record.block_number == first.receipt["blockNumber"]


@pytest.mark.django_db
def test_a_signed_but_unsent_transaction_is_broadcast_on_retry(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    before = balance(w3, RECIPIENT)
    # Simulate a crash between recording and broadcasting.
    record = sender._sign_and_record(
        intent="test:crash", to=RECIPIENT, data="0x", value=7, gas=21000
    )
    assert balance(w3, RECIPIENT) == before

    result = sender.send(intent="test:crash", to=RECIPIENT, data="0x", value=7)

    assert result.record.pk == record.pk
    assert result.succeeded
    assert balance(w3, RECIPIENT) - before == 7


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_get_distinct_nonces(anvil):
    w3 = get_web3()
    before = balance(w3, RECIPIENT)
    errors = []

    def pay(i: int) -> None:
        try:
            operator_sender(get_web3()).send(
                intent=f"test:concurrent-{i}", to=RECIPIENT, data="0x", value=1
            )
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    records = ChainTransaction.objects.filter(intent__startswith="test:concurrent-")
    assert records.count() == 6
    assert len({r.nonce for r in records}) == 6
    assert all(r.status == ChainTransaction.Status.MINED for r in records)
    assert balance(w3, RECIPIENT) - before == 6


@pytest.mark.django_db
def test_a_rejected_broadcast_releases_its_nonce(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    funds = balance(w3, sender.address)
    before = balance(w3, RECIPIENT)
    try:
        rpc(w3, "anvil_setBalance", sender.address, hex(10**9))  # far less than gas * fee
        with pytest.raises(TransactionRejected, match="(?i)insufficient funds"):
            sender.send(intent="test:rejected", to=RECIPIENT, data="0x", value=5, gas=21000)
    finally:
        rpc(w3, "anvil_setBalance", sender.address, hex(funds))

    assert not ChainTransaction.objects.filter(intent="test:rejected").exists()
    following = sender.send(intent="test:after-rejection", to=RECIPIENT, data="0x", value=3)
    retried = sender.send(intent="test:rejected", to=RECIPIENT, data="0x", value=5)

    assert following.succeeded and following.record.nonce == nonce
    assert retried.succeeded and retried.record.nonce == nonce + 1
    assert w3.eth.get_transaction_count(sender.address) == nonce + 2
    assert balance(w3, RECIPIENT) - before == 8


@pytest.mark.django_db
def test_a_nonce_released_below_a_waiting_transaction_is_given_again(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    before = balance(w3, RECIPIENT)
    try:
        # Signed with less gas than a transfer needs, and not broadcast yet.
        sender._sign_and_record(
            intent="test:too-little-gas", to=RECIPIENT, data="0x", value=1, gas=20_000
        )
        with pytest.raises(TransactionPending):
            sender.send(intent="test:behind", to=RECIPIENT, data="0x", value=2, wait_seconds=0.3)
        with pytest.raises(TransactionRejected, match="intrinsic gas too low"):
            sender.send(intent="test:too-little-gas", to=RECIPIENT, data="0x", value=1)

        filler = sender.send(intent="test:filler", to=RECIPIENT, data="0x", value=4)
        behind = sender.send(intent="test:behind", to=RECIPIENT, data="0x", value=2)
    finally:
        rpc(w3, "anvil_dropAllTransactions")

    assert filler.succeeded and filler.record.nonce == nonce
    assert behind.succeeded and behind.record.nonce == nonce + 1
    assert not ChainTransaction.objects.filter(intent="test:too-little-gas").exists()
    assert w3.eth.get_transaction_count(sender.address) == nonce + 2
    assert balance(w3, RECIPIENT) - before == 6


@pytest.mark.django_db
def test_a_nonce_taken_by_another_transaction_releases_the_intent(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    before = balance(w3, RECIPIENT)
    sender._sign_and_record(intent="test:overtaken", to=RECIPIENT, data="0x", value=21, gas=21000)
    # The same key spends the nonce outside the sender (another wallet holding the key).
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    other = Account.from_key(signing_key("operator")).sign_transaction(
        {
            "chainId": sender.chain_id,
            "nonce": nonce,
            "gas": 21000,
            "maxPriorityFeePerGas": 10**9,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "to": RECIPIENT,
            "value": 1,
        }
    )
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(other.raw_transaction))

    with pytest.raises(TransactionRejected, match="another transaction was mined"):
        sender.send(intent="test:overtaken", to=RECIPIENT, data="0x", value=21)
    retried = sender.send(intent="test:overtaken", to=RECIPIENT, data="0x", value=21)

    assert retried.succeeded and retried.record.nonce == nonce + 1
    assert balance(w3, RECIPIENT) - before == 22


@pytest.mark.django_db
def test_a_transaction_dropped_from_the_mempool_is_broadcast_again(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    before = balance(w3, RECIPIENT)
    with mining_paused(w3):
        with pytest.raises(TransactionPending):
            sender.send(intent="test:dropped", to=RECIPIENT, data="0x", value=11, wait_seconds=0.3)
        record = ChainTransaction.objects.get(intent="test:dropped")
        rpc(w3, "anvil_dropTransaction", record.tx_hash)
        with pytest.raises(TransactionNotFound):
            w3.eth.get_transaction(record.tx_hash)
        rpc(w3, "evm_setAutomine", True)

        result = sender.send(intent="test:dropped", to=RECIPIENT, data="0x", value=11)

    assert result.succeeded
    assert result.record.pk == record.pk
    assert result.record.tx_hash == record.tx_hash
    assert result.record.nonce == nonce
    assert w3.eth.get_transaction_count(sender.address) == nonce + 1
    assert balance(w3, RECIPIENT) - before == 11


@pytest.mark.django_db
def test_a_transaction_pending_too_long_is_replaced_at_the_same_nonce(anvil, settings):
    settings.CHAIN_TX_REPLACE_AFTER_SECONDS = 1
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    before = balance(w3, RECIPIENT)
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    try:
        with mining_paused(w3):
            with pytest.raises(TransactionPending):
                sender.send(
                    intent="test:replaced", to=RECIPIENT, data="0x", value=13, wait_seconds=0.3
                )
            first = ChainTransaction.objects.get(intent="test:replaced")
            original = w3.eth.get_transaction(first.tx_hash)
            # The base fee rises past what the first transaction offers: it cannot be mined now.
            raised = 4 * original["maxFeePerGas"]
            rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(raised))

            with pytest.raises(TransactionPending):
                sender.send(
                    intent="test:replaced", to=RECIPIENT, data="0x", value=13, wait_seconds=1.5
                )
            second = ChainTransaction.objects.get(intent="test:replaced")
            replacement = w3.eth.get_transaction(second.tx_hash)
            rpc(w3, "evm_setAutomine", True)

            result = sender.send(intent="test:replaced", to=RECIPIENT, data="0x", value=13)
    finally:
        rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(base_fee))

    assert second.pk == first.pk
    assert second.tx_hash != first.tx_hash
    assert first.tx_hash in second.replaced_hashes
    assert replacement["nonce"] == original["nonce"] == nonce
    assert replacement["maxPriorityFeePerGas"] * 8 >= original["maxPriorityFeePerGas"] * 9
    assert replacement["maxFeePerGas"] * 8 >= original["maxFeePerGas"] * 9
    assert replacement["maxFeePerGas"] >= raised
    all_hashes = [result.record.tx_hash, *result.record.replaced_hashes]
    assert first.tx_hash in all_hashes and second.tx_hash in all_hashes
    assert mined_hashes(w3, all_hashes) == [result.record.tx_hash]
    assert result.receipt["transactionHash"].to_0x_hex() == result.record.tx_hash
    assert result.record.status == ChainTransaction.Status.MINED
    assert w3.eth.get_transaction_count(sender.address) == nonce + 1
    assert balance(w3, RECIPIENT) - before == 13


@pytest.mark.django_db
def test_an_earlier_transaction_of_a_replaced_intent_is_its_receipt_when_mined(anvil, settings):
    settings.CHAIN_TX_REPLACE_AFTER_SECONDS = 1
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    before = balance(w3, RECIPIENT)
    with mining_paused(w3):
        with pytest.raises(TransactionPending):
            sender.send(intent="test:earlier", to=RECIPIENT, data="0x", value=17, wait_seconds=0.3)
        first = ChainTransaction.objects.get(intent="test:earlier")
        with pytest.raises(TransactionPending):
            sender.send(intent="test:earlier", to=RECIPIENT, data="0x", value=17, wait_seconds=1.5)
        second = ChainTransaction.objects.get(intent="test:earlier")
        assert second.tx_hash != first.tx_hash
        # The replacement is lost and the first transaction reaches a block after all.
        rpc(w3, "anvil_dropTransaction", second.tx_hash)
        rpc(w3, "evm_setAutomine", True)
        w3.eth.send_raw_transaction(HexBytes(first.raw))

        result = sender.send(intent="test:earlier", to=RECIPIENT, data="0x", value=17)

    assert result.succeeded
    assert result.record.tx_hash == first.tx_hash
    assert second.tx_hash in result.record.replaced_hashes
    assert mined_hashes(w3, [first.tx_hash, second.tx_hash]) == [first.tx_hash]
    assert w3.eth.get_transaction_count(sender.address) == nonce + 1
    assert balance(w3, RECIPIENT) - before == 17


@pytest.mark.django_db
def test_a_send_that_outwaits_its_limit_raises_pending_and_a_retry_follows_it(anvil):
    w3 = get_web3()
    sender = operator_sender(w3)
    nonce = w3.eth.get_transaction_count(sender.address)
    before = balance(w3, RECIPIENT)
    with mining_paused(w3):
        with pytest.raises(TransactionPending, match="still pending") as pending:
            sender.send(intent="test:slow", to=RECIPIENT, data="0x", value=19, wait_seconds=0.3)
        record = ChainTransaction.objects.get(intent="test:slow")
        assert record.tx_hash in str(pending.value)
        assert record.status == ChainTransaction.Status.SENT
        # A redelivered task while it is still pending: no second transaction.
        with pytest.raises(TransactionPending):
            sender.send(intent="test:slow", to=RECIPIENT, data="0x", value=19, wait_seconds=0.3)
        assert w3.eth.get_transaction_count(sender.address, "pending") == nonce + 1
        rpc(w3, "evm_setAutomine", True)

        result = sender.send(intent="test:slow", to=RECIPIENT, data="0x", value=19)

    assert result.succeeded
    assert result.record.pk == record.pk
    assert result.record.tx_hash == record.tx_hash
    assert ChainTransaction.objects.filter(intent="test:slow").count() == 1
    assert w3.eth.get_transaction_count(sender.address) == nonce + 1
    assert balance(w3, RECIPIENT) - before == 19
