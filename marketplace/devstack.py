"""Local nodes for development and tests: anvil (the chain) and the IPFS node.

Both come from the npm packages in node_modules and listen on 127.0.0.1 only. The IPFS repo is
configured offline *before* its first start: no bootstrap peers, no delegates, no MDNS, no swarm
listeners, so the node never dials anything.

Used by `python -m marketplace.devstack anvil|ipfs` (the Procfile) and by the test fixtures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
ANVIL_BIN = NODE_MODULES / "@foundry-rs/anvil-linux-amd64/bin/anvil"
IPFS_CLI = NODE_MODULES / "ipfs/src/cli.js"
POLYFILL = ROOT / "marketplace/node_polyfill.cjs"
DATA_DIR = Path(os.environ.get("MARKETPLACE_DATA_DIR", ROOT / ".data"))

# The public test mnemonic anvil derives its dev accounts from (dev and tests only).
DEV_MNEMONIC = "test test test test test test test test test test test junk"
# Accounts 0-9 are the users' (demo owners, tests); the marketplace's own keys come after them.
DEV_ACCOUNTS = 20


def dev_private_key(index: int) -> str:
    """The private key of anvil dev account `index` (derived from the public test mnemonic)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(account.key).hex()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, what: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it answered")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


def _post_json(url: str, payload: dict, timeout: float = 2.0) -> dict | None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def anvil_answers(rpc_url: str) -> bool:
    reply = _post_json(rpc_url, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    return bool(reply and "result" in reply)


def ipfs_answers(api_url: str) -> bool:
    try:
        request = urllib.request.Request(f"{api_url}/api/v0/version", method="POST")
        with urllib.request.urlopen(request, timeout=2) as response:
            return "Version" in json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return False


@dataclass
class Node:
    """A node process started by us; `stop()` ends it and its children."""

    name: str
    process: subprocess.Popen
    url: str
    extra: dict = field(default_factory=dict)

    @property
    def rpc_url(self) -> str:
        return self.url

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def anvil_command(port: int, state_file: Path | None = None, chain_id: int = 31337) -> list[str]:
    cmd = [
        str(ANVIL_BIN),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--mnemonic", DEV_MNEMONIC,
        "--accounts", str(DEV_ACCOUNTS),
        "--silent",
    ]  # fmt: skip
    if state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["--state", str(state_file), "--state-interval", "5"]
    return cmd


def start_anvil(port: int | None = None, state_file: Path | None = None, log=None) -> Node:
    port = port or free_port()
    process = subprocess.Popen(
        anvil_command(port, state_file), stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    node = Node("anvil", process, url)
    try:
        _wait_until(lambda: anvil_answers(url), "anvil", 30, process)
    except RuntimeError:
        node.stop()
        raise
    return node


def ipfs_configure_offline(repo: Path, api_port: int, gateway_port: int, rpc_port: int) -> None:
    """Write the offline, loopback-only configuration (run before every start)."""
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Bootstrap"] = []
    addresses = config.setdefault("Addresses", {})
    addresses["Swarm"] = []
    addresses["Announce"] = []
    addresses["NoAnnounce"] = []
    addresses["Delegates"] = []
    addresses["API"] = f"/ip4/127.0.0.1/tcp/{api_port}"
    addresses["Gateway"] = f"/ip4/127.0.0.1/tcp/{gateway_port}"
    addresses["RPC"] = f"/ip4/127.0.0.1/tcp/{rpc_port}"
    discovery = config.setdefault("Discovery", {})
    discovery["MDNS"] = {"Enabled": False, "Interval": 10}
    discovery["webRTCStar"] = {"Enabled": False}
    config.setdefault("Pubsub", {})["Enabled"] = False
    config_path.write_text(json.dumps(config, indent=2))


def _ipfs_env(repo: Path) -> dict:
    return {**os.environ, "IPFS_PATH": str(repo), "IPFS_MONITORING": "", "DEBUG": ""}


def ipfs_init(repo: Path) -> None:
    if (repo / "config").exists():
        return
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["node", "-r", str(POLYFILL), str(IPFS_CLI), "init", "--empty-repo"],
        env=_ipfs_env(repo), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        timeout=120,
    )  # fmt: skip


def start_ipfs(repo: Path, api_port: int | None = None, log=None) -> Node:
    api_port = api_port or free_port()
    ipfs_init(repo)
    ipfs_configure_offline(repo, api_port, free_port(), free_port())
    # A repo left locked by a killed daemon refuses to start; nothing else uses this repo.
    for lock in (repo / "repo.lock", repo / "api"):
        if lock.exists() and lock.is_file():
            lock.unlink()
    process = subprocess.Popen(
        ["node", "-r", str(POLYFILL), str(IPFS_CLI), "daemon", "--offline"],
        env=_ipfs_env(repo), stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    node = Node("ipfs", process, url)
    try:
        _wait_until(lambda: ipfs_answers(url), "IPFS node", 90, process)
    except RuntimeError:
        node.stop()
        raise
    return node


def _run_forever(node: Node) -> None:
    print(f"{node.name} ready at {node.url}", flush=True)

    def _stop(signum, frame):
        node.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    node.process.wait()
    sys.exit(node.process.returncode)


def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def ensure_redis(url: str) -> None:
    """Make sure a Redis answers at `url`: start one on loopback, installing it if needed."""
    from shutil import which
    from urllib.parse import urlparse

    if redis_answers(url):
        print(f"Redis answers at {url}")
        return
    parsed = urlparse(url)
    if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
        sys.exit(
            f"Redis does not answer at {url} (CELERY_BROKER_URL), and it is not on this machine"
        )
    if which("redis-server") is None:
        print("redis-server is not installed; installing it with apt-get")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "redis-server"], check=True)
    redis_dir = DATA_DIR / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
            "--port", str(parsed.port or 6379), "--save", "", "--appendonly", "no",
            "--dir", str(redis_dir), "--logfile", str(redis_dir / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    _wait_until(lambda: redis_answers(url), "Redis", 20)
    print(f"Started Redis at {url}")


def main(argv: list[str]) -> None:
    from urllib.parse import urlparse

    commands = {"anvil", "ipfs", "ensure-redis", "banner"}
    if len(argv) != 1 or argv[0] not in commands:
        sys.exit(f"usage: python -m marketplace.devstack {'|'.join(sorted(commands))}")
    if argv[0] == "ensure-redis":
        ensure_redis(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
    elif argv[0] == "banner":
        port = os.environ.get("WEB_PORT", "8000")
        print(f"\n    The marketplace is ready: open http://127.0.0.1:{port}/\n", flush=True)
    elif argv[0] == "anvil":
        port = urlparse(os.environ.get("CHAIN_RPC_URL", "http://127.0.0.1:8545")).port or 8545
        _run_forever(start_anvil(port, DATA_DIR / "anvil-state.json", log=sys.stdout))
    else:
        port = urlparse(os.environ.get("IPFS_API_URL", "http://127.0.0.1:5001")).port or 5001
        _run_forever(start_ipfs(DATA_DIR / "ipfs", port, log=sys.stdout))


if __name__ == "__main__":
    main(sys.argv[1:])
