"""What validation costs a run, against the stack that `make up` runs (its worker, its three
validators, chain, IPFS node and database).

    .venv/bin/python bench/validators.py [--rows 5000] [--datasets 3] [--model random_forest]

Lists N synthetic datasets (as bench/training.py does), commissions a model on them, pays from
anvil dev account 4 and prints, from the funding transaction being mined:

- when the worker had the report (training, valuation, packaging: a run without validators would
  settle right after, in the settlement's own time),
- when the quorum of attestations was in, and when the run was `completed`,
- the run's time with validators over the time without (the worker's time plus the settlement's),
- CPU seconds each validator process spent meanwhile (from /proc).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_training", ROOT / "bench" / "training.py")
bench_training = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_training)  # sets Django up

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402

from chain.client import get_web3  # noqa: E402
from training.models import TrainingRun  # noqa: E402
from training.services import (  # noqa: E402
    training_run_create,
    training_run_escrow_request,
    training_run_funding_hint,
)
from validators.models import AttestationRequest  # noqa: E402


def validator_cpu_seconds() -> dict[int, float]:
    """pid -> user + system CPU seconds of each running validator process."""
    found = subprocess.run(
        ["pgrep", "-f", "manage.py run_validator"], capture_output=True, text=True
    ).stdout.split()
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in map(int, found):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--datasets", type=int, default=3)
    parser.add_argument("--model", default="random_forest")
    args = parser.parse_args()

    seed = int(time.time()) % 100_000
    features, labels = make_classification(
        n_samples=args.rows * args.datasets, n_features=20, n_informative=8, random_state=seed
    )
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(20)]).round(5)
    frame["label"] = labels
    shards = [frame.iloc[part] for part in np.array_split(np.arange(len(frame)), args.datasets)]
    with tempfile.TemporaryDirectory() as tmp:
        datasets = [
            bench_training.list_frame(
                shard.reset_index(drop=True),
                bench_training.OWNER_KEYS[i % 3],
                f"validated-{seed}-{i}",
                Path(tmp),
            )  # fmt: skip
            for i, shard in enumerate(shards)
        ]
    run = training_run_create(
        buyer=bench_training.user(bench_training.BUYER), dataset_ids=[d.pk for d in datasets],
        target_column="label", model=args.model, seed=1,
    )  # fmt: skip
    escrow = training_run_escrow_request(run)
    w3 = get_web3()
    cpu_before = validator_cpu_seconds()
    if not cpu_before:
        sys.exit("no validator process is running: start the stack with `make up`")
    tx_hash = w3.eth.send_transaction(
        {"from": bench_training.BUYER, "to": escrow["address"], "data": escrow["data"],
         "value": int(escrow["value_wei"])}
    )  # fmt: skip
    w3.eth.wait_for_transaction_receipt(tx_hash)
    mined = time.monotonic()
    training_run_funding_hint(run=run, tx_hash=tx_hash.to_0x_hex())
    report_at = quorum_at = None
    while True:
        run.refresh_from_db()
        now = time.monotonic() - mined
        if report_at is None and run.report_hash:
            report_at = now
        if quorum_at is None and run.report_hash:
            agreeing = AttestationRequest.objects.filter(
                round__run=run, status="attested", report_hash__iexact=run.report_hash
            ).count()
            if agreeing >= run.attestation_round.quorum:
                quorum_at = now
        if run.status in (TrainingRun.Status.COMPLETED, TrainingRun.Status.FAILED):
            break
        time.sleep(0.05)
    done_at = time.monotonic() - mined
    if run.status != TrainingRun.Status.COMPLETED:
        sys.exit(f"the run failed: {run.error}")
    cpu_after = validator_cpu_seconds()
    report_at = report_at or done_at
    quorum_at = quorum_at or done_at
    settling = done_at - max(report_at, quorum_at)
    without = report_at + settling

    print(f"model: {args.model}, {args.datasets} datasets x {args.rows} rows")
    print(f"funding mined -> worker's report recorded: {report_at:.1f} s")
    print(f"funding mined -> quorum of attestations:    {quorum_at:.1f} s")
    print(f"funding mined -> completed (settled):       {done_at:.1f} s")
    print(f"without validators (worker + settlement):   {without:.1f} s")
    print(f"ratio with / without: {done_at / without:.2f} (target <= 2)")
    for pid, before in sorted(cpu_before.items()):
        if pid in cpu_after:
            print(f"  validator pid {pid}: {cpu_after[pid] - before:.1f} CPU s")


if __name__ == "__main__":
    main()
