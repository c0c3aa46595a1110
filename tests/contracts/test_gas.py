"""Pins the gas of the hot paths under their design targets (the same runs as bench/gas.py)."""

from __future__ import annotations

import importlib.util

from tests.contracts.conftest import ROOT, Chain


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
    labels = [label for label, _, _ in bench.rows]
    assert "listFor, first listing of a fresh owner" in labels
    assert "settle, 20 fresh payees" in labels
