"""A validator node: a process of its own, with its own key and local state, that needs only the
marketplace's public API, the chain's RPC endpoint and an IPFS node. It has no access to the
marketplace's database, broker or master key.

For each request the marketplace hands it, it
  1. checks the run's terms against the chain (the job's JobFunded event, each listing's
     DatasetListed event, its price at the funding block, its metadata on IPFS) and refuses
     terms that differ, or code it does not run;
  2. opens the data keys sealed to its X25519 key, fetches the ciphertexts from IPFS, checks
     their hashes against the chain and decrypts them;
  3. re-computes the run's report (training.compute: deterministic for the seed);
  4. signs the report hash and payouts hash it computed (EIP-712) and sends the signature back.

It never signs two different results for one job: what it signed is kept in its state folder,
since two conflicting signatures would let anyone take its stake.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3
from web3.logs import DISCARD

from chain.attestations import payouts_hash, sign_attestation
from chain.client import contract_at
from chain.wrappers import DatasetRegistry, IdentityRegistry, TrainingEscrow
from marketplace.crypto import DecryptionError, open_sealed, x25519_keypair, x25519_public
from marketplace.did import ENCRYPTION_KEY_ATTRIBUTE
from validators.services import dataset_key_context, dp_seed_context, refusal_message

logger = logging.getLogger("validator")

DID_KEY_VALIDITY_SECONDS = 10 * 365 * 86400


class Refused(Exception):
    """The request cannot be attested; the message says why (sent back, signed)."""


@dataclass
class NodeConfig:
    private_key: str
    marketplace_url: str
    rpc_url: str
    state_dir: Path
    poll_seconds: float = 1.0
    # Stake up to the escrow's minimum at start when not staked yet.
    stake: bool = False
    http_timeout: float = 20.0
    contracts: dict = field(default_factory=dict)


class ValidatorNode:
    def __init__(self, config: NodeConfig):
        from chain.client import web3_for

        self.config = config
        self.account = Account.from_key(config.private_key)
        self.address = self.account.address
        self.w3 = web3_for(config.rpc_url, timeout=30)
        self.http = requests.Session()
        self.state_dir = config.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.x25519_private = self._load_x25519()
        self.x25519_public = x25519_public(self.x25519_private)
        self.escrow: TrainingEscrow | None = None
        self.registry: DatasetRegistry | None = None
        self.identity: IdentityRegistry | None = None

    # --- local state ---------------------------------------------------------------------------

    def _load_x25519(self) -> bytes:
        path = self.state_dir / "x25519.key"
        if not path.exists():
            private, _ = x25519_keypair()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(private).decode() + "\n")
        return base64.b64decode(path.read_text().strip())

    @property
    def _signed_path(self) -> Path:
        return self.state_dir / "signed.jsonl"

    def signed(self) -> dict[str, dict]:
        """job id -> what this node signed for it."""
        if not self._signed_path.exists():
            return {}
        entries = (json.loads(line) for line in self._signed_path.read_text().splitlines() if line)
        return {e["job_id"]: e for e in entries}

    def _remember(self, job_id: str, report_hash: str, payouts: str) -> None:
        """Record what is about to be signed; refuse a second, different result for a job."""
        earlier = self.signed().get(job_id)
        if earlier is not None:
            if (earlier["report_hash"], earlier["payouts_hash"]) != (report_hash, payouts):
                raise Refused(
                    f"this validator already attested another result for job {job_id} "
                    f"(report {earlier['report_hash']}), and never signs two"
                )
            return
        with self._signed_path.open("a") as out:
            out.write(
                json.dumps({"job_id": job_id, "report_hash": report_hash, "payouts_hash": payouts})
                + "\n"
            )
            out.flush()
            os.fsync(out.fileno())

    # --- start ---------------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return self.config.marketplace_url.rstrip("/") + path

    def connect(self) -> None:
        """The marketplace's contracts (from its /healthz), checked to exist on this chain."""
        addresses = self.config.contracts
        if not addresses:
            health = self.http.get(self._api("/healthz"), timeout=self.config.http_timeout).json()
            addresses = health["parts"]["contracts"]["figures"]["addresses"]
        for name in ("TrainingEscrow", "DatasetRegistry", "IdentityRegistry"):
            if name not in addresses or self.w3.eth.get_code(addresses[name]) == b"":
                raise RuntimeError(f"{name} is not deployed on the chain at {self.config.rpc_url}")
        self.escrow = TrainingEscrow.at(self.w3, addresses["TrainingEscrow"])
        self.registry = DatasetRegistry.at(self.w3, addresses["DatasetRegistry"])
        self.identity = IdentityRegistry.at(self.w3, addresses["IdentityRegistry"])

    def _transact(self, request) -> dict:
        """Send one of this node's own transactions and wait for it to be mined."""
        tx = {
            "to": request.to,
            "data": request.data,
            "value": request.value_wei,
            "from": self.address,
            "chainId": self.w3.eth.chain_id,
            "nonce": self.w3.eth.get_transaction_count(self.address, "pending"),
            "gasPrice": self.w3.eth.gas_price,
        }
        tx["gas"] = int(self.w3.eth.estimate_gas(tx) * 1.2) + 10_000
        signed = self.account.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def _published_key(self) -> bool:
        name = ENCRYPTION_KEY_ATTRIBUTE.encode().ljust(32, b"\0")
        events = self.identity._events("DIDAttributeChanged", identity=self.address)
        now = self.w3.eth.get_block("latest")["timestamp"]
        for event in reversed(events):
            value = bytes.fromhex(str(event.args["value"]).removeprefix("0x"))
            if bytes.fromhex(str(event.args["name"]).removeprefix("0x")) == name:
                if value == self.x25519_public:
                    return event.args["validTo"] > now
        return False

    def register(self) -> None:
        """Publish the X25519 key in the DID document, and stake if asked to and not staked."""
        if not self._published_key():
            self._transact(
                self.identity.set_attribute_request(
                    self.address, ENCRYPTION_KEY_ATTRIBUTE.encode(), self.x25519_public,
                    DID_KEY_VALIDITY_SECONDS,
                )
            )  # fmt: skip
            logger.info("published the X25519 key in the DID document of %s", self.address)
        state = self.escrow.validator_of(self.address)
        terms = self.escrow.validator_terms()
        if self.config.stake and state.status == 0 and state.stake_wei < terms.min_stake_wei:
            self._transact(self.escrow.stake_request(terms.min_stake_wei - state.stake_wei))
            logger.info("staked %s wei from %s", terms.min_stake_wei, self.address)

    # --- requests ------------------------------------------------------------------------------

    def open_requests(self) -> list[dict]:
        response = self.http.get(
            self._api("/api/attestation-requests"),
            params={"validator": self.address},
            timeout=self.config.http_timeout,
        )
        response.raise_for_status()
        return response.json()

    def answer(self, request: dict) -> dict:
        """The signed attestation of the request, or its signed refusal."""
        from marketplace.errors import NodeUnavailable

        try:
            return self.attest(request)
        except Refused as exc:
            reason = str(exc)
        except (requests.RequestException, NodeUnavailable, ConnectionError):
            raise  # an outage: the request is tried again
        except Exception as exc:
            logger.exception("request %s could not be re-computed", request["id"])
            reason = f"the validator could not re-compute the run ({type(exc).__name__})"
        logger.warning("refusing request %s: %s", request["id"], reason)
        message = refusal_message(request_id=request["id"], job_id=request["job_id"], reason=reason)
        signature = self.account.sign_message(encode_defunct(text=message)).signature
        return {"refusal": reason, "signature": "0x" + bytes(signature).hex()}

    def send(self, request: dict, answer: dict) -> None:
        kind = "refusal" if "refusal" in answer else "attestation"
        response = self.http.post(
            self._api(f"/api/attestation-requests/{request['id']}/{kind}"),
            json=answer,
            timeout=self.config.http_timeout,
        )
        if response.status_code >= 400:
            logger.warning(
                "the marketplace refused the answer to %s: %s", request["id"], response.text
            )

    def attest(self, request: dict) -> dict:
        from training.compute import RunSpec

        try:
            spec = RunSpec.from_dict(request["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(f"the run's terms are malformed ({exc})") from None
        self.check_terms(request, spec)
        data_keys, dp_seed = self.open_keys(request, spec)
        computed = self.recompute(spec, data_keys, dp_seed)
        payees = [listing.owner for listing in spec.listings]
        amounts = [int(p.amount_wei) for p in computed.payouts]
        payouts = "0x" + payouts_hash(payees, amounts).hex()
        self._remember(request["job_id"].lower(), computed.report_hash, payouts)
        signature = sign_attestation(
            self.config.private_key, chain_id=self.w3.eth.chain_id, escrow=self.escrow.address,
            job_id=bytes.fromhex(request["job_id"][2:]),
            report_hash=bytes.fromhex(computed.report_hash[2:]),
            payouts_hash=bytes.fromhex(payouts[2:]),
        )  # fmt: skip
        return {
            "signature": "0x" + signature.hex(),
            "report_hash": computed.report_hash,
            "payouts_hash": payouts,
        }

    def check_terms(self, request: dict, spec) -> None:
        """Everything the chain can confirm about the run's terms; a difference is a refusal."""
        from chain.wrappers import JobTerms
        from training import artifacts
        from training.compute import RunFailed, spec_facts_from_chain

        if spec.code_version != artifacts.code_version():
            raise Refused(
                f"the run is to be computed by code version {spec.code_version}, and this "
                f"validator runs {artifacts.code_version()}"
            )
        if spec.chain_id != self.w3.eth.chain_id or Web3.to_checksum_address(
            spec.escrow
        ) != Web3.to_checksum_address(self.escrow.address):
            raise Refused("the run names another chain or escrow than this validator's")
        if spec.job_id.lower() != request["job_id"].lower():
            raise Refused("the run's terms name another job than the request")
        funded = self._job_funded(request)
        problems = []
        if funded["value"] != spec.value_wei:
            problems.append(f"value {spec.value_wei} wei, but the escrow holds {funded['value']}")
        if funded["fee"] != spec.fee_wei:
            problems.append(f"fee {spec.fee_wei} wei, but the job's fee is {funded['fee']}")
        listed = [listing.listing_id for listing in spec.listings]
        if list(funded["datasetIds"]) != listed:
            problems.append(f"datasets {listed}, but the job funded {list(funded['datasetIds'])}")
        owners = [Web3.to_checksum_address(listing.owner) for listing in spec.listings]
        if [Web3.to_checksum_address(o) for o in funded["owners"]] != owners:
            problems.append("dataset owners other than those the job committed to")
        if problems:
            raise Refused("the terms differ from the chain: " + "; ".join(problems))
        terms = JobTerms(
            job_id=bytes(funded["jobId"]), buyer=funded["buyer"], value_wei=funded["value"],
            fee_wei=funded["fee"], refund_after=funded["refundAfter"],
            dataset_ids=tuple(funded["datasetIds"]), owners=tuple(funded["owners"]),
        )  # fmt: skip
        try:
            on_chain = spec_facts_from_chain(
                self.registry, terms=terms, funding_block=request["funding_block"]
            )
        except RunFailed as exc:
            raise Refused(str(exc)) from None
        for given, actual in zip(spec.listings, on_chain, strict=True):
            for name in ("cid", "content_sha256", "price_wei", "metadata"):
                if getattr(given, name) != getattr(actual, name):
                    raise Refused(
                        f"listing {given.listing_id}'s {name.replace('_', ' ')} differs from "
                        "what the chain and IPFS record"
                    )

    def _job_funded(self, request: dict) -> dict:
        receipt = self.w3.eth.get_transaction_receipt(request["funding_tx"])
        if receipt["blockNumber"] != request["funding_block"]:
            raise Refused("the funding transaction is not in the block the request names")
        escrow = contract_at(self.w3, "TrainingEscrow", self.escrow.address)
        for log in escrow.events.JobFunded().process_receipt(receipt, errors=DISCARD):
            args = log["args"]
            if (
                "0x" + bytes(args["jobId"]).hex() == request["job_id"].lower()
                and args["buyer"] == Web3.to_checksum_address(request["buyer"])
                and Web3.to_checksum_address(log["address"]) == self.escrow.address
            ):
                return dict(args)
        raise Refused("the funding transaction did not fund this job on the escrow")

    def open_keys(self, request: dict, spec) -> tuple[dict[int, bytes], bytes | None]:
        keys = {}
        for listing in spec.listings:
            sealed = (request.get("sealed_keys") or {}).get(str(listing.listing_id))
            if not sealed:
                raise Refused(f"no key was handed over for listing {listing.listing_id}")
            try:
                keys[listing.listing_id] = open_sealed(
                    self.x25519_private, base64.b64decode(sealed),
                    context=dataset_key_context(request["job_id"], listing.listing_id),
                )  # fmt: skip
            except (DecryptionError, ValueError):
                raise Refused(
                    f"the key for listing {listing.listing_id} is not sealed to this validator "
                    "for this job and listing"
                ) from None
        dp_seed = None
        if spec.dp_epsilon is not None:
            sealed = request.get("sealed_dp_seed")
            if not sealed:
                raise Refused("the run uses differential privacy but its noise seed is missing")
            try:
                dp_seed = open_sealed(
                    self.x25519_private, base64.b64decode(sealed),
                    context=dp_seed_context(request["job_id"]),
                )  # fmt: skip
            except (DecryptionError, ValueError):
                raise Refused(
                    "the noise seed is not sealed to this validator for this job"
                ) from None
        return keys, dp_seed

    def recompute(self, spec, data_keys: dict[int, bytes], dp_seed: bytes | None):
        from datasets.listed import ContentMismatch
        from training.compute import RunFailed, compute, read_listing

        with tempfile.TemporaryDirectory(dir=self.state_dir, prefix="run-") as tmp:
            tables = []
            for listing in spec.listings:
                try:
                    tables.append(read_listing(listing, data_keys[listing.listing_id], Path(tmp)))
                except ContentMismatch as exc:
                    raise Refused(str(exc)) from None
                except DecryptionError:
                    raise Refused(
                        f"the key handed over for listing {listing.listing_id} does not decrypt "
                        "its data"
                    ) from None
            try:
                return compute(spec, tables, dp_seed=dp_seed)
            except (RunFailed, ValueError) as exc:
                raise Refused(f"the run cannot be re-computed: {exc}") from None

    # --- loop ----------------------------------------------------------------------------------

    def tick(self) -> int:
        """Answer the open requests; returns how many were answered."""
        answered = 0
        for request in self.open_requests():
            started = time.process_time()
            answer = self.answer(request)
            self.send(request, answer)
            answered += 1
            logger.info(
                "answered request %s (job %s): %s, %.1f CPU s",
                request["id"], request["job_id"], "refused" if "refusal" in answer else "attested",
                time.process_time() - started,
            )  # fmt: skip
        return answered

    def run_forever(self) -> None:
        from marketplace.errors import NodeUnavailable

        while True:  # the marketplace may still be starting (or deploying its contracts)
            try:
                self.connect()
                self.register()
                break
            except (requests.RequestException, NodeUnavailable, ConnectionError, KeyError,
                    ValueError, RuntimeError) as exc:  # fmt: skip
                logger.info(
                    "waiting for the marketplace at %s and its contracts (%s)",
                    self.config.marketplace_url, type(exc).__name__,
                )  # fmt: skip
                time.sleep(max(self.config.poll_seconds, 2.0))
        logger.info("validator %s is watching %s", self.address, self.config.marketplace_url)
        while True:
            try:
                self.tick()
            except (requests.RequestException, NodeUnavailable, ConnectionError) as exc:
                logger.warning("a node or the marketplace does not answer: %s", exc)
            except Exception:  # the node keeps serving the other requests
                logger.exception("the requests could not be answered this round")
            time.sleep(self.config.poll_seconds)
