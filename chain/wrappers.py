"""One wrapper per contract: reads return dataclasses, operator writes go through the one
transaction sender, and calls a user makes from their own wallet come back as ready-to-send
transaction requests (`to`, `data`, `value`) so no wallet needs our ABI."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

from django.conf import settings
from web3 import Web3
from web3.contract import Contract

from chain.attestations import payouts_hash, recover_attester
from chain.client import contract_at, deployed_addresses, deployed_contract, get_web3, web3_for
from chain.events import ChainEvent, _plain, decode_receipt, logs_between
from chain.sender import SentTransaction, TransactionSender, operator_sender


@dataclass(frozen=True)
class TxRequest:
    """A transaction for the user's wallet to send (eth_sendTransaction)."""

    chain_id: int
    to: str
    data: str
    value_wei: int = 0

    def as_json(self) -> dict:
        return {**asdict(self), "value_wei": str(self.value_wei)}


@dataclass(frozen=True)
class Outcome:
    """An operator transaction that was mined, with our events decoded from its receipt."""

    tx_hash: str
    block_number: int
    succeeded: bool
    events: list[ChainEvent]

    def event(self, name: str) -> ChainEvent:
        return next(e for e in self.events if e.name == name)


class _Wrapper:
    name = ""

    def __init__(
        self,
        w3: Web3,
        contract: Contract,
        sender: TransactionSender | None = None,
        *,
        from_block: int | None = None,
    ):
        self.w3 = w3
        self.contract = contract
        self.address = contract.address
        self._sender = sender
        # Where event reads start; None: the deployment block in our database.
        self._from_block = from_block
        self._chain_id: int | None = None

    @classmethod
    def deployed(cls, w3: Web3 | None = None):
        w3 = w3 or get_web3()
        return cls(w3, deployed_contract(w3, cls.name))

    @classmethod
    def at(cls, w3: Web3, address: str, *, from_block: int = 0):
        """The contract at `address`, for a process without the marketplace database (a
        validator node): its event reads start at `from_block` (the deployment block, if known)."""
        wrapper = cls(w3, contract_at(w3, cls.name, address), from_block=from_block)
        wrapper._chain_id = w3.eth.chain_id
        return wrapper

    @classmethod
    def for_requests(cls):
        """A wrapper that only encodes transactions for users' wallets: it makes no RPC call
        (pages that poll build these on every request)."""
        w3 = web3_for(settings.CHAIN_RPC_URL)
        return cls(w3, deployed_contract(w3, cls.name))

    @property
    def sender(self) -> TransactionSender:
        if self._sender is None:
            self._sender = operator_sender(self.w3)
        return self._sender

    def _start_block(self) -> int:
        if self._from_block is not None:
            return self._from_block
        from chain.models import Deployment

        return (
            Deployment.objects.filter(address=self.address)
            .values_list("block_number", flat=True)
            .first()
            or 0
        )

    def _events(
        self,
        event: str,
        *,
        from_block: int | None = None,
        to_block: int | str = "latest",
        first_only: bool = False,
        **argument_filters,
    ) -> list[ChainEvent]:
        """Our contract's `event` logs matching indexed arguments, from `from_block` (default: its
        deployment block) to `to_block`, read in bounded ranges; `first_only`: up to the first
        range that holds one."""
        start = self._start_block() if from_block is None else from_block
        logs = logs_between(
            self.w3, event=getattr(self.contract.events, event), argument_filters=argument_filters,
            from_block=start, to_block=to_block, first_only=first_only,
        )  # fmt: skip
        return [
            ChainEvent(
                contract=self.name,
                name=log["event"],
                args={k: _plain(v) for k, v in log["args"].items()},
                address=self.address,
                tx_hash=log["transactionHash"].to_0x_hex(),
                log_index=log["logIndex"],
                block_number=log["blockNumber"],
            )
            for log in logs
        ]

    def request(self, function: str, *args, value: int = 0) -> TxRequest:
        data = self.contract.encode_abi(function, args=list(args))
        chain_id = settings.CHAIN_ID if self._chain_id is None else self._chain_id
        return TxRequest(chain_id, self.address, data, value)

    def _send(self, intent: str, function: str, *args) -> Outcome:
        data = self.contract.encode_abi(function, args=list(args))
        sent: SentTransaction = self.sender.send(
            intent=intent, to=self.address, data=data, wait_seconds=settings.CHAIN_TX_WAIT_SECONDS
        )
        return Outcome(
            tx_hash=sent.record.tx_hash,
            block_number=sent.receipt["blockNumber"],
            succeeded=sent.succeeded,
            events=decode_receipt(self.w3, sent.receipt, deployed_addresses()),
        )


# --- Identity registry (ERC-1056) ------------------------------------------------------------


class IdentityRegistry(_Wrapper):
    name = "IdentityRegistry"

    def identity_owner(self, identity: str) -> str:
        return self.contract.functions.identityOwner(Web3.to_checksum_address(identity)).call()

    def changed(self, identity: str) -> int:
        """Block of the identity's latest change (0: never changed): where the event walk starts."""
        return self.contract.functions.changed(Web3.to_checksum_address(identity)).call()

    def set_attribute_request(
        self, identity: str, name: bytes, value: bytes, validity: int
    ) -> TxRequest:
        return self.request(
            "setAttribute",
            Web3.to_checksum_address(identity),
            name.ljust(32, b"\0"),
            value,
            validity,
        )


# --- Dataset registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    listing_id: int
    owner: str
    price_wei: int
    delisted: bool


@dataclass(frozen=True)
class ListingTerms:
    """What the owner signs for a gasless listing (the EIP-712 `Listing` struct minus the nonce)."""

    owner: str
    cid: str
    content_hash: bytes
    metadata_hash: bytes
    license: str
    price_wei: int
    parent_id: int
    deadline: int


LISTING_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "Listing": [
        {"name": "owner", "type": "address"},
        {"name": "cid", "type": "string"},
        {"name": "contentHash", "type": "bytes32"},
        {"name": "metadataHash", "type": "bytes32"},
        {"name": "license", "type": "string"},
        {"name": "price", "type": "uint256"},
        {"name": "parentId", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


class DatasetRegistry(_Wrapper):
    name = "DatasetRegistry"

    def listing(self, listing_id: int) -> Listing:
        owner, price, delisted = self.contract.functions.getListing(listing_id).call()
        return Listing(listing_id, owner, price, delisted)

    def listed_event(self, listing_id: int) -> ChainEvent | None:
        """The DatasetListed event of a listing: its CID, content hash, metadata hash, license."""
        # A listing is listed once: the read stops at its event.
        events = self._events("DatasetListed", first_only=True, listingId=listing_id)
        return events[0] if events else None

    def listing_count(self) -> int:
        return self.contract.functions.listingCount().call()

    def nonce(self, owner: str) -> int:
        return self.contract.functions.nonces(Web3.to_checksum_address(owner)).call()

    def listing_typed_data(self, terms: ListingTerms, nonce: int | None = None) -> dict:
        """The EIP-712 typed data the owner signs (eth_signTypedData_v4) to list gaslessly."""
        owner = Web3.to_checksum_address(terms.owner)
        return {
            "types": LISTING_TYPES,
            "primaryType": "Listing",
            "domain": {
                "name": "DatasetRegistry",
                "version": "1",
                "chainId": self.w3.eth.chain_id,
                "verifyingContract": self.address,
            },
            "message": {
                "owner": owner,
                "cid": terms.cid,
                "contentHash": "0x" + terms.content_hash.hex(),
                "metadataHash": "0x" + terms.metadata_hash.hex(),
                "license": terms.license,
                "price": terms.price_wei,
                "parentId": terms.parent_id,
                "nonce": self.nonce(owner) if nonce is None else nonce,
                "deadline": terms.deadline,
            },
        }

    def relay_listing(self, *, intent: str, terms: ListingTerms, signature: bytes) -> Outcome:
        """The operator relays an owner-signed listing; the contract checks the signature."""
        return self._send(
            intent, "listFor", Web3.to_checksum_address(terms.owner), terms.cid,
            terms.content_hash, terms.metadata_hash, terms.license, terms.price_wei,
            terms.parent_id, terms.deadline, signature,
        )  # fmt: skip


# --- Training escrow -------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    price_wei: int  # what `fund` requires: dataset prices + compute fee
    fee_wei: int  # the platform's part, frozen at funding


@dataclass(frozen=True)
class JobTerms:
    """A funded job as committed on-chain (read back from its JobFunded event): the escrow keys
    it by (buyer, job id), and settles it only to `owners`, one amount per dataset."""

    job_id: bytes
    buyer: str
    value_wei: int
    fee_wei: int
    refund_after: int
    dataset_ids: tuple[int, ...]
    owners: tuple[str, ...]  # each dataset's owner when the job was funded

    def as_tuple(self) -> tuple:
        return (
            self.job_id,
            Web3.to_checksum_address(self.buyer),
            self.value_wei,
            self.fee_wei,
            self.refund_after,
            list(self.dataset_ids),
            [Web3.to_checksum_address(o) for o in self.owners],
        )

    @classmethod
    def from_event(cls, event: ChainEvent) -> JobTerms:
        args = event.args
        return cls(
            bytes.fromhex(args["jobId"].removeprefix("0x")), args["buyer"], args["value"],
            args["fee"], args["refundAfter"], tuple(args["datasetIds"]), tuple(args["owners"]),
        )  # fmt: skip


@dataclass(frozen=True)
class EscrowFees:
    compute_fee_wei: int
    fee_bps: int
    refund_delay_seconds: int


class JobState:
    NONE, FUNDED, SETTLED, REFUNDED = 0, 1, 2, 3


@dataclass(frozen=True)
class ValidatorTerms:
    """What the escrow asks of validators: a settlement needs `quorum` attestations of the
    `validators_per_run` validators that re-compute a run; attesters share `validator_fee_bps` of
    the job's fee; whoever proves an equivocation gets `slash_reward_bps` of the stake."""

    min_stake_wei: int
    quorum: int
    validators_per_run: int
    unbonding_delay_seconds: int
    validator_fee_bps: int
    slash_reward_bps: int

    def as_tuple(self) -> tuple:
        """The constructor's `ValidatorTerms` struct, in its field order."""
        return (
            self.min_stake_wei, self.unbonding_delay_seconds, self.quorum,
            self.validators_per_run, self.validator_fee_bps, self.slash_reward_bps,
        )  # fmt: skip


class ValidatorStatus:
    NONE, ACTIVE, LEAVING, REMOVED = 0, 1, 2, 3


@dataclass(frozen=True)
class ValidatorState:
    address: str
    stake_wei: int
    status: int  # ValidatorStatus
    available_at: int  # when a leaving validator may withdraw its stake (0 otherwise)


class Attestation(NamedTuple):
    """What a validator signed for a job (one side of an equivocation, for `slash_request`)."""

    report_hash: bytes
    payouts_hash: bytes
    signature: bytes


def settle_intent(job_id: bytes) -> str:
    """The sender's intent of a job's settlement: one transaction per job."""
    return f"settle:{job_id.hex()}"


class TrainingEscrow(_Wrapper):
    name = "TrainingEscrow"

    def quote(self, dataset_ids: list[int]) -> Quote:
        price, fee = self.contract.functions.quote(dataset_ids).call()
        return Quote(price, fee)

    def fees(self) -> EscrowFees:
        return EscrowFees(*self.contract.functions.fees().call())

    def job_state(self, job_id: bytes, *, buyer: str) -> int:
        """The state of `buyer`'s job: whoever else funded the same id has a job of its own."""
        return self.contract.functions.jobState(Web3.to_checksum_address(buyer), job_id).call()

    def balance_of(self, account: str) -> int:
        """What `account` can withdraw now."""
        return self.contract.functions.balanceOf(Web3.to_checksum_address(account)).call()

    def fees_held(self) -> int:
        return self.contract.functions.feesHeld().call()

    def validator_terms(self) -> ValidatorTerms:
        functions = self.contract.functions
        return ValidatorTerms(
            min_stake_wei=functions.minStake().call(),
            quorum=functions.quorum().call(),
            validators_per_run=functions.validatorsPerRun().call(),
            unbonding_delay_seconds=functions.unbondingDelay().call(),
            validator_fee_bps=functions.validatorFeeBps().call(),
            slash_reward_bps=functions.slashRewardBps().call(),
        )

    def validator_of(self, address: str) -> ValidatorState:
        address = Web3.to_checksum_address(address)
        stake, status, available_at = self.contract.functions.validatorOf(address).call()
        return ValidatorState(address, stake, status, available_at)

    def is_validator(self, address: str) -> bool:
        """Whether `address`'s attestations count now (staked enough, not removed)."""
        return self.contract.functions.isValidator(Web3.to_checksum_address(address)).call()

    def validator_events(self, event: str, **argument_filters) -> list[ChainEvent]:
        """The escrow's Staked, UnstakeRequested, StakeWithdrawn or Slashed events."""
        if event not in ("Staked", "UnstakeRequested", "StakeWithdrawn", "Slashed"):
            raise ValueError(f"{event} is not a validator event")
        return self._events(event, **argument_filters)

    def stake_burned(self) -> int:
        """Wei of slashed stakes locked in the escrow for good."""
        return self.contract.functions.stakeBurned().call()

    def job_events(self, job_id: bytes, *, buyer: str | None = None) -> list[ChainEvent]:
        """A job's lineage on-chain: JobFunded, PayeeCredited... (the owners', then the attesting
        validators'), JobSettled (which names the validators) or JobRefunded, and Slashed for a
        validator that equivocated on it; with `buyer`, only that buyer's job (anyone may fund,
        and refund, a job under the same id)."""
        by_buyer = {} if buyer is None else {"buyer": Web3.to_checksum_address(buyer)}
        events = [
            *self._events("JobFunded", jobId=job_id, **by_buyer),
            # Only the operator settles, and only a run's own buyer's job.
            *self._events("PayeeCredited", jobId=job_id),
            *self._events("JobSettled", jobId=job_id, **by_buyer),
            *self._events("JobRefunded", jobId=job_id, **by_buyer),
            *self._events("Slashed", jobId=job_id),
        ]
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    def fund_request(self, job_id: bytes, dataset_ids: list[int]) -> TxRequest:
        """The buyer's payment: calldata of `fund` with the exact price as value."""
        return self.request("fund", job_id, dataset_ids, value=self.quote(dataset_ids).price_wei)

    def withdraw_request(self) -> TxRequest:
        """Everything the caller is owed: payouts, refunds, validator fees, slashing rewards."""
        return self.request("withdraw")

    # A validator's (or anyone's) own wallet.

    def stake_request(self, value_wei: int) -> TxRequest:
        """Adds `value_wei` to the caller's stake (the result must reach the minimum stake)."""
        return self.request("stake", value=value_wei)

    def request_unstake_request(self) -> TxRequest:
        return self.request("requestUnstake")

    def withdraw_stake_request(self) -> TxRequest:
        return self.request("withdrawStake")

    def slash_request(
        self,
        job_id: bytes,
        a: Attestation | tuple[bytes, bytes, bytes],
        b: Attestation | tuple[bytes, bytes, bytes],
    ) -> TxRequest:
        """Slashes the validator that signed both `a` and `b`, two different (report hash,
        payouts hash, signature) for `job_id`; the caller is credited the reporter's reward."""
        return self.request("slash", job_id, *tuple(a), *tuple(b))

    def settle(
        self,
        *,
        job: JobTerms,
        amounts: list[int],
        model_cid: str,
        report_hash: bytes,
        signatures: list[bytes],
    ) -> Outcome:
        """Credit `amounts[i]` to `job.owners[i]` (they add up to the value minus the fee), on the
        validators' attestations of exactly these payouts and report: `signatures` in any order,
        they are sent ordered by signer as the escrow requires."""
        ordered = self._by_signer(
            job=job, amounts=amounts, report_hash=report_hash, signatures=signatures
        )
        return self._send(
            settle_intent(job.job_id), "settle", job.as_tuple(), amounts, model_cid, report_hash,
            ordered,
        )  # fmt: skip

    def _by_signer(
        self, *, job: JobTerms, amounts: list[int], report_hash: bytes, signatures: list[bytes]
    ) -> list[bytes]:
        """`signatures` ordered by the address each recovers to, ascending."""
        attested = payouts_hash(list(job.owners), amounts)
        chain_id = settings.CHAIN_ID if self._chain_id is None else self._chain_id

        def signer(signature: bytes) -> int:
            try:
                address = recover_attester(
                    signature, chain_id=chain_id, escrow=self.address, job_id=job.job_id,
                    report_hash=report_hash, payouts_hash=attested,
                )  # fmt: skip
            except Exception:  # noqa: BLE001 - malformed: the escrow refuses it with its reason
                return 0
            return int(address, 16)

        return sorted((bytes(s) for s in signatures), key=signer)

    def refund(self, *, job: JobTerms) -> Outcome:
        return self._send(f"refund:{job.job_id.hex()}", "refund", job.as_tuple())
