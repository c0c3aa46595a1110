"""How many datasets (and so payees) one run can have before its `fund` or its `settle` no longer
fits in a block of 30M gas, against the cap the API puts on datasets per run.

    .venv/bin/python bench/capacity.py [--sizes 10,50,100,200,400]

Starts its own anvil (a 300M block gas limit, so the large cases can be measured), deploys the
committed contracts, lists each size's datasets for fresh owners (the costliest case: every payee
is credited for the first time), funds and settles one job per size with 2 attestations, and
prints the gas of each, then extrapolates where each crosses 30M.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from eth_account import Account
from eth_utils import keccak
from web3 import Web3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_spec = importlib.util.spec_from_file_location("bench_gas", ROOT / "bench" / "gas.py")
gas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gas)

from chain.attestations import payouts_hash  # noqa: E402

BLOCK_GAS_LIMIT = 30_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100,200,400")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with gas.own_anvil("--gas-limit", "300000000") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        bench = gas.Bench(w3)
        registry = bench.deploy("DatasetRegistry")
        escrow = bench.deploy(
            "TrainingEscrow", registry.address, bench.admin, bench.operator, gas.COMPUTE_FEE,
            gas.FEE_BPS, gas.REFUND_DELAY, gas.VALIDATOR_TERMS,
        )  # fmt: skip
        for validator in bench.validators:
            bench.send(escrow.functions.stake(), validator.address, gas.MIN_STAKE)
        content, metadata = keccak(text="content"), keccak(text="metadata")
        # One funded owner account pays for the fresh owners' listings (each lists its own).
        rows = []
        for size in sizes:
            ids = []
            for i in range(size):
                owner = Account.from_key(keccak(text=f"capacity owner {size} {i}"))
                w3.eth.send_transaction(
                    {"from": bench.owners[0], "to": owner.address, "value": 10**16}
                )
                tx = registry.functions.list(
                    gas.CID, content, metadata, gas.LICENSE, gas.PRICE, 0
                ).build_transaction(
                    {"from": owner.address, "nonce": 0, "gasPrice": w3.eth.gas_price}
                )
                signed = owner.sign_transaction(tx)
                receipt = w3.eth.wait_for_transaction_receipt(
                    w3.eth.send_raw_transaction(signed.raw_transaction)
                )
                ids.append(
                    registry.events.DatasetListed().process_receipt(receipt)[0]["args"].listingId
                )
            job_id = keccak(text=f"capacity job {size}")
            price, _ = escrow.functions.quote(ids).call()
            funded = bench.send(escrow.functions.fund(job_id, ids), bench.buyer, price)
            event = escrow.events.JobFunded().process_receipt(funded)[0]["args"]
            job = (
                job_id, event.buyer, event.value, event.fee, event.refundAfter,
                list(event.datasetIds), list(event.owners),
            )  # fmt: skip
            to_payees = event.value - event.fee
            amounts = [to_payees // size] * size
            amounts[0] += to_payees - sum(amounts)
            report = keccak(text="report")
            payouts = payouts_hash(job[6], amounts)
            signatures = [
                bench.attestation(escrow, v, job_id, report, payouts) for v in bench.validators[:2]
            ]
            settled = bench.send(
                escrow.functions.settle(job, amounts, gas.MODEL_CID, report, signatures),
                bench.operator,
            )
            rows.append((size, funded["gasUsed"], settled["gasUsed"]))
            print(f"{size:>5} datasets: fund {funded['gasUsed']:>12,} gas, settle "
                  f"{settled['gasUsed']:>12,} gas")  # fmt: skip

    # fund is quadratic in the datasets (its duplicate check), settle linear: fit each from the
    # two largest sizes and solve for the 30M block.
    (n1, f1, s1), (n2, f2, s2) = rows[-2], rows[-1]
    per_payee = (s2 - s1) / (n2 - n1)
    settle_max = int(n2 + (BLOCK_GAS_LIMIT - s2) / per_payee)
    quad = (f2 - f1 - (n2 - n1) * (f1 / n1)) / ((n2 * n2 - n1 * n1) - (n2 - n1) * n1)
    lin = (f1 - quad * n1 * n1) / n1
    fund_max = int((-lin + (lin * lin + 4 * quad * BLOCK_GAS_LIMIT) ** 0.5) / (2 * quad))
    from training.services import MAX_DATASETS  # noqa: PLC0415 - needs Django only here

    print(f"settle: {per_payee:,.0f} gas per further payee -> at most ~{settle_max} payees in 30M")
    print(f"fund: quadratic -> at most ~{fund_max} datasets in 30M")
    print(f"the API's cap on datasets per run: {MAX_DATASETS}")
    return 0


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    import django

    django.setup()
    sys.exit(main())
