"""The dev validators (anvil accounts 12-14, after the operator's 10 and the admin's 11), staked
in the session's escrow so that its settlements can be attested."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.client import get_web3
from chain.wrappers import TrainingEscrow
from marketplace.devstack import dev_private_key

DEV_VALIDATOR_ACCOUNTS = (12, 13, 14)


def wallet_send(w3, sender: str, request) -> dict:
    """What a user's wallet does with a TxRequest (anvil signs for its dev accounts)."""
    tx_hash = w3.eth.send_transaction(
        {"from": sender, "to": request.to, "data": request.data, "value": request.value_wei}
    )
    return w3.eth.wait_for_transaction_receipt(tx_hash)


@pytest.fixture
def dev_validators(contracts) -> list[LocalAccount]:
    """The dev validators' keys, each staked (once per session) at the escrow's minimum."""
    w3 = get_web3()
    escrow = TrainingEscrow.deployed(w3)
    validators = [Account.from_key(dev_private_key(i)) for i in DEV_VALIDATOR_ACCOUNTS]
    minimum = escrow.validator_terms().min_stake_wei
    for validator in validators:
        if not escrow.is_validator(validator.address):
            receipt = wallet_send(w3, validator.address, escrow.stake_request(minimum))
            assert receipt["status"] == 1
    return validators


def mine(w3, blocks: int) -> None:
    """Mine `blocks` empty blocks on anvil at once."""
    w3.provider.make_request("anvil_mine", [hex(blocks)])


@pytest.fixture
def chain_restored(contracts):
    """The session's chain put back as it was before the test (the test's blocks are removed),
    so that a test may mine, rewrite or replace blocks without other tests seeing it."""
    w3 = get_web3()
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    yield w3
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True
