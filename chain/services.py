"""Writes that concern the chain as a whole: deploying our contracts (from the admin key)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from web3 import Web3

from chain.client import PRODUCT_CONTRACTS, bytecode_sha256, contract_at, load_artifact
from chain.models import ChainTransaction, Deployment
from chain.sender import TransactionSender
from chain.wrappers import ValidatorTerms

logger = logging.getLogger(__name__)


# A contract built on another's address is deployed anew when that one is.
_DEPENDS_ON = {"TrainingEscrow": ("DatasetRegistry",)}


def _constructor_args(name: str, *, admin: str, operator: str, deployed: dict[str, str]) -> list:
    if name == "TrainingEscrow":
        return [
            deployed["DatasetRegistry"],
            admin,  # fees and roles
            operator,  # relays, settles and refunds: a different key, the contract enforces it
            settings.ESCROW_COMPUTE_FEE_WEI,
            settings.ESCROW_FEE_BPS,
            settings.ESCROW_REFUND_DELAY_SECONDS,
            ValidatorTerms(
                min_stake_wei=settings.ESCROW_MIN_STAKE_WEI,
                quorum=settings.ESCROW_QUORUM,
                validators_per_run=settings.ESCROW_VALIDATORS_PER_RUN,
                unbonding_delay_seconds=settings.ESCROW_UNBONDING_DELAY_SECONDS,
                validator_fee_bps=settings.ESCROW_VALIDATOR_FEE_BPS,
                slash_reward_bps=settings.ESCROW_SLASH_REWARD_BPS,
            ).as_tuple(),
        ]
    return []


def _forget_reset_chain(chain_id: int) -> None:
    """The node no longer has our code (a fresh dev chain): its records describe nothing."""
    logger.warning("chain %s no longer has our contracts; forgetting its records", chain_id)
    with transaction.atomic():
        Deployment.objects.filter(chain_id=chain_id).delete()
        ChainTransaction.objects.filter(chain_id=chain_id).delete()


def contracts_deploy(
    *, w3: Web3, sender: TransactionSender, operator: str
) -> list[tuple[Deployment, bool]]:
    """Deploy the product contracts that this chain does not have in their current build, from
    the admin's `sender`, with `operator` as the escrow's operator.

    A contract whose recorded build is not the committed artifact's (or that is built on one
    deployed anew) is deployed again and its record moved to the new address. Returns
    (deployment, created) per contract; re-running on a chain that is up to date does nothing.
    """
    chain_id = sender.chain_id
    records = {d.contract: d for d in Deployment.objects.filter(chain_id=chain_id)}
    if any(w3.eth.get_code(Web3.to_checksum_address(d.address)) == b"" for d in records.values()):
        _forget_reset_chain(chain_id)
        records = {}

    results = []
    deployed = {name: d.address for name, d in records.items()}
    renewed: set[str] = set()
    for name in PRODUCT_CONTRACTS:
        record = records.get(name)
        build = bytecode_sha256(name)
        stale = record is not None and (
            record.bytecode_sha256 != build or any(d in renewed for d in _DEPENDS_ON.get(name, ()))
        )
        if record is not None and not stale:
            results.append((record, False))
            continue
        if stale:
            logger.warning(
                "%s at %s on chain %s is not the current build; deploying it anew",
                name, record.address, chain_id,
            )  # fmt: skip
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        constructor = factory.constructor(
            *_constructor_args(name, admin=sender.address, operator=operator, deployed=deployed)
        )
        data = constructor.data_in_transaction
        # The block number makes the intent unique per chain history.
        intent = f"deploy:{name}:{build[:16]}:{w3.eth.block_number}"
        sent = sender.send(intent=intent, to=None, data=data)
        if not sent.succeeded:
            raise RuntimeError(f"deploying {name} reverted in transaction {sent.record.tx_hash}")
        address = Web3.to_checksum_address(sent.receipt["contractAddress"])
        record, _ = Deployment.objects.update_or_create(
            chain_id=chain_id,
            contract=name,
            defaults={
                "address": address,
                "tx_hash": sent.record.tx_hash,
                "block_number": sent.receipt["blockNumber"],
                "bytecode_sha256": build,
            },
        )
        contract_at(w3, name, address)  # the ABI loads for the recorded address
        deployed[name] = address
        renewed.add(name)
        results.append((record, True))
    return results
