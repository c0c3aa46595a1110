"""The committed build artifacts are exactly what the sources compile to, from any checkout."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.contracts.conftest import BUILD_DIR, ROOT

PRODUCT = ["DatasetRegistry", "IdentityRegistry", "ReentrantWithdrawer", "TrainingEscrow"]


def run_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", "chain/contracts/build.js", "--check"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_artifacts_are_what_the_sources_compile_to_in_any_folder(tmp_path: Path):
    """Compiled in a copy of the checkout elsewhere, the sources give the committed artifacts
    byte for byte (so they do not depend on where the checkout is either)."""
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(ROOT / "chain" / "contracts", copy / "chain" / "contracts")
    (copy / "node_modules").symlink_to(ROOT / "node_modules")
    result = run_check(copy)
    assert result.returncode == 0, result.stderr

    # And --check does notice an edited source.
    source = copy / "chain" / "contracts" / "DatasetRegistry.sol"
    source.write_text(source.read_text() + "\n// edited\n")
    result = run_check(copy)
    assert result.returncode == 1
    assert "differs: DatasetRegistry.json" in result.stderr


def test_artifacts_shape():
    assert sorted(p.stem for p in BUILD_DIR.glob("*.json")) == PRODUCT
    for name in PRODUCT:
        text = (BUILD_DIR / f"{name}.json").read_text()
        artifact = json.loads(text)
        assert text == json.dumps(artifact, indent=2) + "\n"
        assert artifact["contractName"] == name
        assert artifact["sourceName"].startswith("chain/contracts/")
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2
        assert artifact["deployedBytecode"].startswith("0x")
        assert len(artifact["sourceHash"]) == 66
        assert str(ROOT) not in text


def test_the_deployed_code_fits_the_code_size_limit():
    """EIP-170: a contract's deployed code is at most 24,576 bytes, or it cannot be deployed."""
    for name in PRODUCT:
        code = json.loads((BUILD_DIR / f"{name}.json").read_text())["deployedBytecode"]
        assert (len(code) - 2) // 2 <= 24_576, name
