"""Fixtures for the contract tests: pure web3.py against the session's anvil (no Django database).

Every test runs inside an `evm_snapshot` that is reverted afterwards, so the contracts it deploys,
the balances it moves and the time it skips never leak into other tests sharing the same anvil.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.types import TxReceipt

from tests.contracts.signing import payouts_hash, sign_attestation

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "chain" / "contracts" / "build"
# anvil's public test mnemonic; its keys are used to sign typed data in tests only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
CHAIN_ID = 31337

Account.enable_unaudited_hdwallet_features()


def load_artifact(name: str) -> dict[str, Any]:
    return json.loads((BUILD_DIR / f"{name}.json").read_text())


def dev_account(index: int) -> LocalAccount:
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return param["type"]


def error_selectors(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    selectors = {}
    for item in abi:
        if item["type"] == "error":
            types = [_abi_type(i) for i in item["inputs"]]
            selectors[keccak(text=f"{item['name']}({','.join(types)})")[:4]] = (item["name"], types)
    return selectors


def decode_custom_error(abi: list[dict[str, Any]], data: str | bytes) -> tuple[str, tuple]:
    raw = HexBytes(data)
    name, types = error_selectors(abi)[bytes(raw[:4])]
    values = abi_decode(types, bytes(raw[4:]))
    return name, tuple(
        to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)
    )


@dataclass
class Chain:
    """The session's anvil seen from one test: dev accounts, deploy, transact, revert checks."""

    w3: Web3

    @property
    def accounts(self) -> list[str]:
        return self.w3.eth.accounts

    def deploy(self, name: str, *args: Any, sender: str | None = None) -> Contract:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx_hash = factory.constructor(*args).transact({"from": sender or self.accounts[0]})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])

    def transact(self, call: Any, sender: str, value: int = 0, gas: int | None = None) -> TxReceipt:
        params = {"from": sender, "value": value}
        if gas is not None:  # skips eth_estimateGas, which ignores evm_setNextBlockTimestamp
            params["gas"] = gas
        tx_hash = call.transact(params)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def reverts(
        self,
        call: Any,
        sender: str,
        error: str,
        *args: Any,
        value: int = 0,
        abi: list | None = None,
    ) -> None:
        """Asserts that sending `call` reverts with the custom error `error(*args)`."""
        with pytest.raises(ContractCustomError) as excinfo:
            call.transact({"from": sender, "value": value})
        name, decoded = decode_custom_error(abi or call.contract_abi, excinfo.value.data)
        assert name == error, f"reverted with {name}{decoded}, expected {error}"
        if args:
            assert decoded == tuple(args), f"{name} arguments {decoded} != {tuple(args)}"

    def view_reverts(self, call: Any, error: str, *args: Any, abi: list | None = None) -> None:
        with pytest.raises(ContractCustomError) as excinfo:
            call.call()
        name, decoded = decode_custom_error(abi or call.contract_abi, excinfo.value.data)
        assert name == error, f"reverted with {name}{decoded}, expected {error}"
        if args:
            assert decoded == tuple(args)

    def timestamp(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def increase_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])

    def mine_at(self, timestamp: int) -> None:
        self.w3.provider.make_request("evm_mine", [timestamp])

    def set_next_timestamp(self, timestamp: int) -> None:
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])

    def balance(self, address: str) -> int:
        return self.w3.eth.get_balance(address)

    def snapshot(self) -> str:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]

    def revert_to(self, snapshot_id: str) -> None:
        assert self.w3.provider.make_request("evm_revert", [snapshot_id])["result"] is True


def events(contract: Contract, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
    """Decoded `name` events that `contract` emitted in `receipt`, as plain dicts of arguments."""
    event = getattr(contract.events, name)()
    topic = keccak(text=event.signature)
    found = []
    for log in receipt["logs"]:
        if log["address"] != contract.address or bytes(log["topics"][0]) != topic:
            continue
        found.append(dict(event.process_log(log)["args"]))
    return found


@pytest.fixture(scope="session")
def w3(anvil) -> Web3:
    web3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))
    assert web3.eth.chain_id == CHAIN_ID
    return web3


@pytest.fixture(scope="session")
def dev_accounts(w3: Web3) -> list[LocalAccount]:
    accounts = [dev_account(i) for i in range(10)]
    assert [a.address for a in accounts] == w3.eth.accounts[:10]
    return accounts


@pytest.fixture
def chain(w3: Web3) -> Iterator[Chain]:
    helper = Chain(w3)
    snapshot_id = helper.snapshot()
    yield helper
    helper.revert_to(snapshot_id)


@dataclass
class Actors:
    """Named dev accounts (unlocked in anvil; the keys sign typed data)."""

    admin: LocalAccount
    operator: LocalAccount
    alice: LocalAccount
    bob: LocalAccount
    carol: LocalAccount
    buyer: LocalAccount
    stranger: LocalAccount


@pytest.fixture(scope="session")
def actors(dev_accounts: list[LocalAccount]) -> Actors:
    # Accounts 3-9: 0-2 may be used by the product's own fixtures on the same chain.
    return Actors(*dev_accounts[3:10])


COMPUTE_FEE = Web3.to_wei(0.01, "ether")
FEE_BPS = 500  # 5 %
REFUND_DELAY = 3 * 24 * 3600

MIN_STAKE = 10**18
UNBONDING_DELAY = 7 * 24 * 3600
QUORUM = 2
VALIDATORS_PER_RUN = 3
VALIDATOR_FEE_BPS = 3_000  # 30 % of a job's fee, split among its attesters
SLASH_REWARD_BPS = 5_000
VALIDATOR_TERMS = (
    MIN_STAKE, UNBONDING_DELAY, QUORUM, VALIDATORS_PER_RUN, VALIDATOR_FEE_BPS, SLASH_REWARD_BPS,
)  # fmt: skip
# The dev validators: anvil accounts 12-14 (10 and 11 are the marketplace's operator and admin).
VALIDATOR_ACCOUNTS = (12, 13, 14)
MODEL_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
REPORT_HASH = keccak(text="valuation report")


@pytest.fixture(scope="session")
def validators(w3: Web3) -> list[LocalAccount]:
    """The dev validators, ascending by address (the order `settle` takes attestations in)."""
    accounts = [dev_account(i) for i in VALIDATOR_ACCOUNTS]
    assert all(a.address in w3.eth.accounts for a in accounts)
    return sorted(accounts, key=lambda a: int(a.address, 16))


@dataclass
class Market:
    chain: Chain
    identity: Contract
    registry: Contract
    escrow: Contract
    actors: Actors
    validators: list[LocalAccount]
    staked: int = 0  # wei the test staked into the escrow (and did not take back)

    def stake(self, validator: str, value: int = MIN_STAKE) -> TxReceipt:
        receipt = self.chain.transact(self.escrow.functions.stake(), validator, value)
        self.staked += value
        return receipt

    def attest(
        self, signer: LocalAccount, job: tuple, amounts: list[int], report_hash: bytes = REPORT_HASH
    ) -> bytes:
        """`signer`'s attestation of the job's payouts and report."""
        return sign_attestation(
            signer, self.escrow.address, job[0], report_hash, payouts_hash(job[6], amounts)
        )

    def settle_call(
        self,
        job: tuple,
        amounts: list[int],
        *,
        signers: list[LocalAccount] | None = None,
        report_hash: bytes = REPORT_HASH,
        model_cid: str = MODEL_CID,
    ):
        """`settle` attested by `signers` (default: a quorum of the dev validators), in their
        ascending order."""
        signers = self.validators[:QUORUM] if signers is None else signers
        signatures = [self.attest(v, job, amounts, report_hash) for v in signers]
        return self.escrow.functions.settle(job, amounts, model_cid, report_hash, signatures)

    def list_dataset(
        self, owner: str, price: int, *, cid: str = "bafkreidatasetcid", parent_id: int = 0
    ) -> int:
        receipt = self.chain.transact(
            self.registry.functions.list(
                cid, b"\x11" * 32, b"\x22" * 32, "CC-BY-4.0", price, parent_id
            ),
            owner,
        )
        return events(self.registry, receipt, "DatasetListed")[0]["listingId"]

    def validator_share(self, job: tuple, attesters: int = QUORUM) -> int:
        """What each of `attesters` validators is credited for settling `job`."""
        return job[3] * VALIDATOR_FEE_BPS // 10_000 // attesters

    def kept_fee(self, job: tuple, attesters: int = QUORUM) -> int:
        """The part of the job's fee the marketplace keeps once the attesters are paid."""
        return job[3] - self.validator_share(job, attesters) * attesters

    def fund(self, job_id: bytes, dataset_ids: list[int], buyer: str | None = None):
        """Funds a job at its quoted price; returns (receipt, Job tuple for settle/refund)."""
        buyer = buyer or self.actors.buyer.address
        price, _fee = self.escrow.functions.quote(dataset_ids).call()
        receipt = self.chain.transact(self.escrow.functions.fund(job_id, dataset_ids), buyer, price)
        return receipt, job_terms(events(self.escrow, receipt, "JobFunded")[0])


def job_terms(funded: dict[str, Any]) -> tuple:
    """The Job tuple that settle / refund take, from a JobFunded event."""
    return (
        funded["jobId"], funded["buyer"], funded["value"], funded["fee"], funded["refundAfter"],
        list(funded["datasetIds"]), list(funded["owners"]),
    )  # fmt: skip


@pytest.fixture
def deploy_market(
    chain: Chain, actors: Actors, validators: list[LocalAccount]
) -> Callable[..., Market]:
    def deploy(
        compute_fee: int = COMPUTE_FEE,
        fee_bps: int = FEE_BPS,
        refund_delay: int = REFUND_DELAY,
        validator_terms: tuple = VALIDATOR_TERMS,
        stake: bool = True,
    ) -> Market:
        """The three contracts; with `stake`, the dev validators have staked the minimum."""
        admin = actors.admin.address
        identity = chain.deploy("IdentityRegistry", sender=admin)
        registry = chain.deploy("DatasetRegistry", sender=admin)
        escrow = chain.deploy(
            "TrainingEscrow",
            registry.address,
            admin,
            actors.operator.address,
            compute_fee,
            fee_bps,
            refund_delay,
            validator_terms,
            sender=admin,
        )
        market = Market(chain, identity, registry, escrow, actors, validators)
        if stake:
            for validator in validators:
                market.stake(validator.address, validator_terms[0])
        return market

    return deploy


@pytest.fixture
def market(deploy_market: Callable[..., Market]) -> Market:
    return deploy_market()
