"""Pins the gas of the hot paths under their design targets (the same runs as bench/gas.py), and
near the figures the escrow with validators measured, so a change that costs more gas shows here."""

from __future__ import annotations

import importlib.util

from tests.contracts.conftest import ROOT, Chain

# What bench/gas.py printed for the escrow with validators (the payees are the owners the job
# committed to; each attestation is a validator's signature, checked and credited its fee share).
MEASURED = {
    "fund, 1 dataset": 59_345,
    "fund, 2 datasets": 63_891,
    "fund, 5 datasets": 78_347,
    "settle, 1 fresh payee, 2 attestations": 97_433,
    "settle, 5 fresh payees, 2 attestations": 198_361,
    "settle, 20 fresh payees, 2 attestations": 577_106,
    "settle, 1 fresh payee, 3 attestations": 110_105,
    "settle, 5 fresh payees, 3 attestations": 211_081,
    "settle, 20 fresh payees, 3 attestations": 589_760,
    "settle, 1 payee already credited, 2 attestations": 80_309,
    "withdraw": 32_796,
    "withdraw by a validator (its fee shares)": 37_730,
    "stake, a new validator": 49_032,
    "requestUnstake": 31_238,
    "withdrawStake": 32_520,
    "slash, reporter with no balance yet": 90_827,
}


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gas", ROOT / "bench" / "gas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hot_paths_stay_within_their_gas_targets(chain: Chain, capsys):
    bench = load_bench().Bench(chain.w3)
    bench.run()
    within = bench.print_table()
    table = capsys.readouterr().out
    assert within, table
    used = {label: gas for label, gas, _ in bench.rows}
    assert "listFor, first listing of a fresh owner" in used
    for label, figure in MEASURED.items():
        # Calldata costs vary by a few gas with the zero bytes of ids and addresses.
        assert abs(used[label] - figure) <= figure // 100, (label, used[label], table)
    assert used["fund, 5 datasets"] <= 70_000 + 4 * 5_000
    # A settlement: the first escrow's target per payee, plus 10,000 per attestation.
    for payees in (1, 5, 20):
        for attestations in (2, 3):
            label = f"settle, {payees} fresh payee{'s' * (payees > 1)}, {attestations} attestations"
            assert used[label] <= 60_000 + payees * 25_000 + attestations * 10_000, label
