"""A run's scratch folder (decrypted rows) left by a killed worker is removed when a worker
starts; the folders of live processes stay."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from datasets.uploads import MEMORY_DIR, plaintext_path
from tests.conftest import start_celery_worker, stop_celery_worker
from training.pipeline import workdir_prefix


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.django_db(transaction=True)
def test_a_worker_start_removes_run_folders_of_dead_processes(
    django_db_setup, anvil, ipfs_node, tmp_path
):
    prefix = workdir_prefix()  # run-<host>-<this pid>-
    host = prefix.split("-")[1]
    data_dir = Path(settings.DATA_DIR)
    stale = data_dir / f"run-{host}-{_dead_pid()}-orphan"
    live = data_dir / f"{prefix}alive"
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "dataset-1.plain").write_bytes(b"salary\n987654.321\n")
    # A file decrypted in memory by a listing or a run whose worker was killed.
    stale_plain = MEMORY_DIR / f"plain-{_dead_pid()}-orphan.csv"
    live_plain = MEMORY_DIR / f"plain-{os.getpid()}-alive.csv"
    for path in (stale_plain, live_plain):
        path.write_bytes(b"salary\n987654.321\n")
    # The working folder of a listing whose worker was killed while processing it.
    stale_listing = Path(settings.DATASET_UPLOAD_DIR) / f"work-{_dead_pid()}-orphan"
    stale_listing.mkdir(parents=True)
    (stale_listing / "upload.csv").write_bytes(b"salary\n987654.321\n")

    worker = start_celery_worker(
        hostname=f"cleanup-{time.monotonic_ns()}@localhost",
        queue=f"cleanup-{time.monotonic_ns()}",
        log_path=tmp_path / "worker.log",
    )
    try:
        deadline = time.monotonic() + 30
        # The worker's start removes the folders, then the files: wait for both.
        while (stale.exists() or stale_plain.exists() or stale_listing.exists()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert not stale.exists(), (tmp_path / "worker.log").read_text()
        assert not stale_plain.exists()
        assert not stale_listing.exists()
        assert live.exists()  # this test's process is alive: its folder is not an orphan
        assert live_plain.exists()
    finally:
        stop_celery_worker(worker)
        live_plain.unlink(missing_ok=True)
        stale_plain.unlink(missing_ok=True)
        for folder in (stale, live):
            if folder.exists():
                for child in folder.iterdir():
                    child.unlink()
                folder.rmdir()


def test_decrypted_rows_that_fit_stay_in_memory(settings, tmp_path):
    settings.DATASET_DECRYPT_IN_MEMORY_MAX_BYTES = 1000

    small = plaintext_path(size=1000, beside=tmp_path, suffix=".plain")
    large = plaintext_path(size=1001, beside=tmp_path, suffix=".plain")
    try:
        assert small.parent == MEMORY_DIR  # memory-backed (tmpfs)
        assert large.parent == tmp_path
        assert small.name.startswith(f"plain-{os.getpid()}-")
    finally:
        small.unlink()
        large.unlink()


def test_decrypted_rows_go_to_disk_when_memory_has_no_room(settings, tmp_path):
    import shutil

    settings.DATASET_DECRYPT_IN_MEMORY_MAX_BYTES = 10**15
    room = shutil.disk_usage(MEMORY_DIR).free

    path = plaintext_path(size=room, beside=tmp_path, suffix=".plain")
    try:
        assert path.parent == tmp_path
    finally:
        path.unlink()
