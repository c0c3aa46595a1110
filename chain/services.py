"""Writes that concern the chain as a whole: deploying our contracts."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from web3 import Web3

from chain.client import bytecode_sha256, contract_at, load_artifact
from chain.models import ChainTransaction, Deployment
from chain.sender import TransactionSender

logger = logging.getLogger(__name__)


def _constructor_args(name: str, operator: str, deployed: dict[str, str]) -> list:
    if name == "TrainingEscrow":
        return [
            deployed["DatasetRegistry"],
            operator,  # admin: fee and role administration
            operator,  # the operator role: settles and refunds jobs
            settings.ESCROW_COMPUTE_FEE_WEI,
            settings.ESCROW_FEE_BPS,
            settings.ESCROW_REFUND_DELAY_SECONDS,
        ]
    return []


def _forget_reset_chain(chain_id: int) -> None:
    """The node no longer has our code (a fresh dev chain): its records describe nothing."""
    logger.warning("chain %s no longer has our contracts; forgetting its records", chain_id)
    with transaction.atomic():
        Deployment.objects.filter(chain_id=chain_id).delete()
        ChainTransaction.objects.filter(chain_id=chain_id).delete()


def contracts_deploy(*, w3: Web3, sender: TransactionSender) -> list[tuple[Deployment, bool]]:
    """Deploy the product contracts that this chain does not have yet.

    Returns (deployment, created) per contract; re-running on a chain that has them does nothing.
    """
    chain_id = sender.chain_id
    records = {d.contract: d for d in Deployment.objects.filter(chain_id=chain_id)}
    if any(w3.eth.get_code(Web3.to_checksum_address(d.address)) == b"" for d in records.values()):
        _forget_reset_chain(chain_id)
        records = {}

    results = []
    deployed = {name: d.address for name, d in records.items()}
    for name in ("IdentityRegistry", "DatasetRegistry", "TrainingEscrow"):
        record = records.get(name)
        if record is not None:
            results.append((record, False))
            continue
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        constructor = factory.constructor(*_constructor_args(name, sender.address, deployed))
        data = constructor.data_in_transaction
        # The block number makes the intent unique per chain history.
        intent = f"deploy:{name}:{bytecode_sha256(name)[:16]}:{w3.eth.block_number}"
        sent = sender.send(intent=intent, to=None, data=data)
        if not sent.succeeded:
            raise RuntimeError(f"deploying {name} reverted in transaction {sent.record.tx_hash}")
        address = Web3.to_checksum_address(sent.receipt["contractAddress"])
        record = Deployment.objects.create(
            chain_id=chain_id,
            contract=name,
            address=address,
            tx_hash=sent.record.tx_hash,
            block_number=sent.receipt["blockNumber"],
            bytecode_sha256=bytecode_sha256(name),
        )
        contract_at(w3, name, address)  # the ABI loads for the recorded address
        deployed[name] = address
        results.append((record, True))
    return results
