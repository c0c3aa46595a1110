"""Pins the gas of the hot paths under their design targets (the same runs as bench/gas.py), and
near the figures escrow v2 measured, so a change that costs more gas shows here."""

from __future__ import annotations

import importlib.util

from tests.contracts.conftest import ROOT, Chain

# What bench/gas.py printed for escrow v2 (the payees are the owners the job committed to).
MEASURED = {
    "fund, 1 dataset": 59_001,
    "fund, 2 datasets": 63_508,
    "fund, 5 datasets": 77_847,
    "settle, 1 fresh payee": 69_062,
    "settle, 5 fresh payees": 170_515,
    "settle, 20 fresh payees": 550_917,
    "settle, 1 payee already credited": 51_962,
    "withdraw": 30_345,
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
    assert used["settle, 20 fresh payees"] <= 60_000 + 20 * 25_000
