"""Time `make up` until /healthz is all green, then stop it with one Ctrl-C (SIGINT).

    python3 bench/startup.py [--clone]    # --clone: a fresh clone in a temporary folder (cold)

Prints the seconds to green and the seconds the stop took. Uses the default ports (8000, 8545,
5001), so nothing else may be running on them.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def healthz_green() -> bool:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=5) as response:
            return json.loads(response.read())["ok"] is True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clone", action="store_true", help="cold start from a fresh clone")
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    folder = ROOT
    if args.clone:
        folder = Path(tempfile.mkdtemp(prefix="marketplace-cold-")) / "marketplace"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    (folder / ".data").mkdir(exist_ok=True)
    log_path = folder / ".data" / "startup-bench.log"
    log = open(log_path, "w")  # noqa: SIM115
    started = time.monotonic()
    process = subprocess.Popen(
        ["make", "up"], cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    while not healthz_green():
        if process.poll() is not None or time.monotonic() - started > args.timeout:
            print(f"not green; see {log_path}", file=sys.stderr)
            os.killpg(process.pid, signal.SIGTERM)
            sys.exit(1)
        time.sleep(0.5)
    green = time.monotonic() - started
    stopping = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    label = "cold (fresh clone)" if args.clone else "warm restart"
    print(f"{label}: /healthz green after {green:.1f} s")
    stop = time.monotonic() - stopping
    print(f"stopped by one Ctrl-C in {stop:.1f} s (exit code {process.returncode})")


if __name__ == "__main__":
    main()
