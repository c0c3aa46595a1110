"""The operator's transaction sender against a real anvil."""

import threading

import pytest
from django.db import connection
from web3 import Web3

from chain.client import get_web3
from chain.models import ChainTransaction
from chain.sender import operator_sender

RECIPIENT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil dev account 1


def balance(w3: Web3, address: str) -> int:
    return w3.eth.get_balance(address)


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
