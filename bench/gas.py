"""Gas used by the marketplace contracts' hot paths, next to the targets they are designed for.

    .venv/bin/python bench/gas.py [--rpc-url http://127.0.0.1:8545] [--strict]

Without --rpc-url it starts its own anvil (node_modules, 127.0.0.1, a free port) and stops it
afterwards. Contracts are deployed from the committed artifacts in chain/contracts/build/.
With --strict the exit code is 1 when a figure is over its target.

A settlement's target is the escrow's first target for its payees (60,000 + 25,000 a payee)
plus 10,000 per validator attestation it carries.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth_account import Account
from eth_utils import keccak
from web3 import Web3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chain.attestations import payouts_hash, sign_attestation  # noqa: E402

BUILD_DIR = ROOT / "chain" / "contracts" / "build"
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
# anvil's public dev mnemonic: the bench signs typed data with its keys, on a throwaway chain.
DEV_MNEMONIC = "test test test test test test test test test test test junk"

CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # a CIDv1, 59 chars
MODEL_CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
LICENSE = "CC-BY-4.0"
PRICE = 10**17
COMPUTE_FEE = 10**16
FEE_BPS = 500
REFUND_DELAY = 3 * 24 * 3600
MIN_STAKE = 10**18
UNBONDING_DELAY = 7 * 24 * 3600
VALIDATOR_TERMS = (MIN_STAKE, UNBONDING_DELAY, 2, 3, 3_000, 5_000)
# Dev accounts: 12-14 are the validators; 15 and 16 a validator that leaves and one slashed.
VALIDATOR_ACCOUNTS = (12, 13, 14)
LEAVING_ACCOUNT, SLASHED_ACCOUNT = 15, 16
ACCOUNTS = 20

LISTING_TYPES = {
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
    ]
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def own_anvil(*extra: str) -> Iterator[str]:
    """A throwaway anvil on a free loopback port (`extra`: more anvil options); yields its URL."""
    port = free_port()
    command = [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent"]
    command += ["--chain-id", "31337", "--mnemonic", DEV_MNEMONIC, "--accounts", str(ACCOUNTS)]
    command += list(extra)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"anvil exited with code {process.returncode}")
            try:
                _ = w3.eth.chain_id
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise RuntimeError("anvil did not answer within 30 s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


class Bench:
    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.accounts = w3.eth.accounts
        self.admin, self.operator, self.buyer = self.accounts[0], self.accounts[1], self.accounts[2]
        self.owners = self.accounts[3:8]
        self.rows: list[tuple[str, int, int]] = []
        Account.enable_unaudited_hdwallet_features()
        self.validators = sorted(
            (self.dev_account(i) for i in VALIDATOR_ACCOUNTS), key=lambda a: int(a.address, 16)
        )

    @staticmethod
    def dev_account(index: int):
        return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")

    def deploy(self, name: str, *args):
        artifact = json.loads((BUILD_DIR / f"{name}.json").read_text())
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self.send(factory.constructor(*args), self.admin)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])

    def send(self, call, sender: str, value: int = 0):
        tx_hash = call.transact({"from": sender, "value": value})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} failed")
        return receipt

    def measure(self, label: str, target: int, call, sender: str, value: int = 0):
        receipt = self.send(call, sender, value)
        self.rows.append((label, receipt["gasUsed"], target))
        return receipt

    def run(self) -> None:
        registry = self.deploy("DatasetRegistry")
        escrow = self.deploy(
            "TrainingEscrow", registry.address, self.admin, self.operator, COMPUTE_FEE, FEE_BPS,
            REFUND_DELAY, VALIDATOR_TERMS,
        )  # fmt: skip
        chain_id = self.w3.eth.chain_id

        def attest(validator, job: tuple, amounts: list[int], report_hash: bytes) -> bytes:
            payouts = payouts_hash(job[6], amounts)
            return self.attestation(escrow, validator, job[0], report_hash, payouts)

        content, metadata = keccak(text="content"), keccak(text="metadata")

        def listing(price: int = PRICE, parent: int = 0):
            return registry.functions.list(CID, content, metadata, LICENSE, price, parent)

        self.measure("list, very first listing of the registry", 90_000, listing(), self.owners[0])
        self.measure("list by the owner", 90_000, listing(), self.owners[1])

        deadline = self.w3.eth.get_block("latest")["timestamp"] + 3600

        def list_for(owner, label: str | None = None) -> int:
            """A listing relayed for `owner`, who signed it (owners need no ETH)."""
            message = {
                "owner": owner.address, "cid": CID, "contentHash": content,
                "metadataHash": metadata, "license": LICENSE, "price": PRICE, "parentId": 0,
                "nonce": registry.functions.nonces(owner.address).call(), "deadline": deadline,
            }  # fmt: skip
            signature = Account.sign_typed_data(
                owner.key,
                domain_data={
                    "name": "DatasetRegistry",
                    "version": "1",
                    "chainId": chain_id,
                    "verifyingContract": registry.address,
                },  # fmt: skip
                message_types=LISTING_TYPES,
                message_data=message,
            ).signature
            call = registry.functions.listFor(
                owner.address, CID, content, metadata, LICENSE, PRICE, 0, deadline, signature
            )
            if label is None:
                receipt = self.send(call, self.owners[4])
            else:
                receipt = self.measure(label, 90_000, call, self.owners[4])
            return registry.events.DatasetListed().process_receipt(receipt)[0]["args"].listingId

        fresh = Account.from_key(keccak(text="gas bench relayed owner"))
        for label in ("listFor, first listing of a fresh owner", "listFor, later listing"):
            list_for(fresh, label)

        for owner in self.owners:
            self.send(listing(), owner)
        count = registry.functions.listingCount().call()
        ids = list(range(count - 4, count + 1))

        def fresh_listings(tag: str, n: int) -> list[int]:
            """`n` listings, each of a fresh owner: settling pays fresh payees."""
            owners = [Account.from_key(keccak(text=f"gas bench payee {tag} {i}")) for i in range(n)]
            return [list_for(owner) for owner in owners]

        jobs = {}

        def fund(label: str | None, job_label: str, dataset_ids: list[int]):
            job_id = keccak(text=job_label)
            price, _ = escrow.functions.quote(dataset_ids).call()
            call = escrow.functions.fund(job_id, dataset_ids)
            if label is None:
                receipt = self.send(call, self.buyer, price)
            else:
                target = 70_000 + 5_000 * (len(dataset_ids) - 1)
                receipt = self.measure(label, target, call, self.buyer, price)
            event = escrow.events.JobFunded().process_receipt(receipt)[0]["args"]
            jobs[job_label] = (
                job_id, event.buyer, event.value, event.fee, event.refundAfter,
                list(event.datasetIds), list(event.owners),
            )  # fmt: skip

        for validator in self.validators:
            self.send(escrow.functions.stake(), validator.address, MIN_STAKE)

        fund("fund, 1 dataset", "job 1", fresh_listings("a", 1))
        fund("fund, 2 datasets", "job 2", ids[:2])
        fund("fund, 5 datasets", "job 5", fresh_listings("b", 5))
        fund(None, "job warm-up", fresh_listings("w", 1))
        for attestations in (2, 3):
            for payees in (1, 5, 20):
                fund(
                    None,
                    f"job {payees}/{attestations}",
                    fresh_listings(f"c{payees}/{attestations}", payees),
                )
        fund(None, "job withdraw", ids[:1])
        fund(None, "job credited", ids[:1])

        def settle(label: str, job_label: str, attestations: int = 2):
            job = jobs[job_label]
            payees = len(job[6])
            to_payees = job[2] - job[3]
            amounts = [to_payees // payees] * payees
            amounts[0] += to_payees - sum(amounts)
            report = keccak(text="report")
            signatures = [attest(v, job, amounts, report) for v in self.validators[:attestations]]
            call = escrow.functions.settle(job, amounts, MODEL_CID, report, signatures)
            target = 60_000 + 25_000 * payees + 10_000 * attestations
            self.measure(label, target, call, self.operator)

        settle("settle, first ever, 1 payee, 2 attestations (fees held share a set slot)",
               "job warm-up")  # fmt: skip
        for attestations in (2, 3):
            for payees in (1, 5, 20):
                label = (
                    f"settle, {payees} fresh payee{'s' * (payees > 1)}, {attestations} attestations"
                )
                settle(label, f"job {payees}/{attestations}", attestations)
        settle("settle, 1 payee (balance 0 -> x), 2 attestations", "job withdraw")
        settle("settle, 1 payee already credited, 2 attestations", "job credited")

        self.measure("withdraw", 40_000, escrow.functions.withdraw(), self.owners[0])
        self.measure(
            "withdraw by a validator (its fee shares)",
            40_000,
            escrow.functions.withdraw(),
            self.validators[0].address,
        )

        # Validators: stake, unbonding, slashing.
        leaving = self.dev_account(LEAVING_ACCOUNT).address
        self.measure("stake, a new validator", 50_000, escrow.functions.stake(), leaving, MIN_STAKE)
        self.measure("requestUnstake", 35_000, escrow.functions.requestUnstake(), leaving)
        self.w3.provider.make_request("evm_increaseTime", [UNBONDING_DELAY])
        self.w3.provider.make_request("evm_mine", [])
        self.measure("withdrawStake", 40_000, escrow.functions.withdrawStake(), leaving)

        slashed = self.dev_account(SLASHED_ACCOUNT)
        self.send(escrow.functions.stake(), slashed.address, MIN_STAKE)
        job_id, payouts = keccak(text="equivocated job"), keccak(text="payouts")
        first, second = keccak(text="report 1"), keccak(text="report 2")
        call = escrow.functions.slash(
            job_id, first, payouts, self.attestation(escrow, slashed, job_id, first, payouts),
            second, payouts, self.attestation(escrow, slashed, job_id, second, payouts),
        )  # fmt: skip
        self.measure("slash, reporter with no balance yet", 100_000, call, self.buyer)

    def attestation(self, escrow, validator, job_id: bytes, report: bytes, payouts: bytes):
        """`validator`'s EIP-712 attestation of a job's report and payouts hash."""
        return sign_attestation(
            validator.key, chain_id=self.w3.eth.chain_id, escrow=escrow.address, job_id=job_id,
            report_hash=report, payouts_hash=payouts,
        )  # fmt: skip

    def print_table(self) -> bool:
        width = max(len(label) for label, _, _ in self.rows)
        print(f"{'operation':<{width}}  {'gas used':>9}  {'target':>9}  status")
        print(f"{'-' * width}  {'-' * 9}  {'-' * 9}  ------")
        all_ok = True
        for label, used, target in self.rows:
            ok = used <= target
            all_ok &= ok
            print(f"{label:<{width}}  {used:>9,}  {target:>9,}  {'OK' if ok else 'OVER'}")
        return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-url", help="a dev chain with unlocked accounts (default: own anvil)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a figure is OVER")
    args = parser.parse_args()

    def bench(url: str) -> bool:
        w3 = Web3(Web3.HTTPProvider(url))
        runner = Bench(w3)
        runner.run()
        print(f"chain {w3.eth.chain_id}, {w3.client_version}")
        return runner.print_table()

    if args.rpc_url:
        ok = bench(args.rpc_url)
    else:
        with own_anvil() as url:
            ok = bench(url)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
