"""Fixtures that start the real nodes: anvil and the IPFS node once per test session on free
ports, and a real Celery worker process on the running Redis."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from marketplace import devstack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_a_deadlock():
    """A transactional test's flush (TRUNCATE of every table) can deadlock with a query the live
    server answers meanwhile (the validator processes poll it): the flush is tried again."""
    from django.db import OperationalError
    from django.test import TransactionTestCase

    teardown = TransactionTestCase._fixture_teardown

    def retrying(self):
        for attempt in range(5):
            try:
                return teardown(self)
            except Exception as exc:
                chain, cause = [], exc
                while cause is not None:
                    chain.append(cause)
                    cause = cause.__cause__ or cause.__context__
                deadlock = any(
                    isinstance(e, OperationalError) and "deadlock detected" in str(e) for e in chain
                )
                if not deadlock or attempt == 4:
                    raise
                time.sleep(0.2)

    TransactionTestCase._fixture_teardown = retrying
    yield
    TransactionTestCase._fixture_teardown = teardown


@pytest.fixture(autouse=True)
def _fresh_limits_and_health():
    """Each test starts with no request counted against the limits and no health figures kept."""
    from django.core.cache import caches

    from marketplace.health import HEALTH_CACHE_KEY

    caches["throttle"].clear()
    caches["default"].delete(HEALTH_CACHE_KEY)


@pytest.fixture(scope="session")
def anvil():
    """A fresh anvil (chain id 31337, the dev mnemonic, 20 accounts: 10 and 11 are the
    marketplace's operator and admin) for the whole test session."""
    node = devstack.start_anvil()
    previous = settings.CHAIN_RPC_URL
    settings.CHAIN_RPC_URL = node.url
    yield node
    settings.CHAIN_RPC_URL = previous
    node.stop()


@pytest.fixture(scope="session")
def ipfs_node(tmp_path_factory):
    """A fresh js-ipfs node, offline and on loopback, for the whole test session."""
    node = devstack.start_ipfs(tmp_path_factory.mktemp("ipfs") / "repo")
    previous = settings.IPFS_API_URL
    settings.IPFS_API_URL = node.url
    yield node
    settings.IPFS_API_URL = previous
    node.stop()


@pytest.fixture(scope="session")
def _deployed_addresses(anvil, django_db_setup, django_db_blocker):
    """Deploy the contracts once per session; returns the Deployment rows' field values.

    The rows are removed again, so that each test starts from an empty database."""
    from chain.client import get_web3
    from chain.models import ChainTransaction, Deployment
    from chain.sender import admin_sender, signing_address
    from chain.services import contracts_deploy

    with django_db_blocker.unblock():
        w3 = get_web3()
        contracts_deploy(w3=w3, sender=admin_sender(w3), operator=signing_address("operator"))
        rows = list(Deployment.objects.filter(chain_id=settings.CHAIN_ID).values())
        Deployment.objects.all().delete()
        ChainTransaction.objects.all().delete()
    return rows


@pytest.fixture
def contracts(_deployed_addresses, db):
    """The product contracts deployed on the session's anvil and recorded in the test database
    (re-recorded for each test, since transactional tests empty the tables)."""
    from chain.models import Deployment

    for row in _deployed_addresses:
        Deployment.objects.update_or_create(
            chain_id=row["chain_id"], contract=row["contract"],
            defaults={k: v for k, v in row.items() if k not in {"id", "chain_id", "contract"}},
        )  # fmt: skip
    return {row["contract"]: row["address"] for row in _deployed_addresses}


def _database_url_for_worker() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def start_celery_worker(
    *,
    hostname: str,
    queue: str,
    log_path: Path,
    extra_env: dict | None = None,
    host_dir: Path | None = None,
):
    """Start a real Celery worker process on the test Redis, using the test database and the
    session's nodes; returns once it answers a ping. With `host_dir` it runs as on a host of its
    own: its data folder and working directory are there, so it shares no disk with the test
    process (the web) or another worker, only the database, Redis, IPFS and the chain."""
    from marketplace.celery import app

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url_for_worker(),
        "CHAIN_RPC_URL": settings.CHAIN_RPC_URL,
        "IPFS_API_URL": settings.IPFS_API_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "MARKETPLACE_MASTER_KEY": base64.b64encode(settings.MASTER_KEY).decode(),
        **({"MARKETPLACE_DATA_DIR": str(host_dir / "data")} if host_dir else {}),
        **(extra_env or {}),
    }
    log = open(log_path, "w")  # noqa: SIM115 - the process writes to it until it stops
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "marketplace", "worker",
            "--hostname", hostname, "--queues", queue,
            "--concurrency", "2", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ],
        cwd=host_dir or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited early:\n{log_path.read_text()}")
        if app.control.ping(destination=[hostname], timeout=0.5):
            return process
    process.terminate()
    raise RuntimeError(f"the Celery worker did not answer:\n{log_path.read_text()}")


def stop_celery_worker(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, anvil, ipfs_node, validator_nodes, tmp_path_factory):
    """A real Celery worker process on the test Redis queue, using the test database and nodes,
    with the session's validators re-computing the runs it trains. It runs as on another host:
    its data folder and working directory are its own (see `start_celery_worker`).

    Tests that hand work to it must use `@pytest.mark.django_db(transaction=True)` so their rows
    are committed where the worker can see them.
    """
    host_dir = tmp_path_factory.mktemp("worker-host")
    process = start_celery_worker(
        hostname=f"test-worker-{os.getpid()}@localhost",
        queue=settings.CELERY_TASK_DEFAULT_QUEUE,
        log_path=host_dir / "worker.log",
        host_dir=host_dir,
    )
    yield process
    stop_celery_worker(process)


# The dev validators: anvil accounts beyond the marketplace's own (10 operator, 11 admin).
VALIDATOR_DEV_ACCOUNTS = (12, 13, 14)


class ValidatorNodes:
    """The validator processes of the session: `manage.py run_validator`, each with its own key
    and state folder, and none of the marketplace's database, broker or master key."""

    WITHHELD = ("DATABASE_URL", "MARKETPLACE_MASTER_KEY", "CELERY_BROKER_URL", "THROTTLE_REDIS_URL")

    def __init__(self, *, marketplace_url: str, contracts: dict, base_dir: Path):
        self.marketplace_url = marketplace_url
        self.contracts = contracts
        self.base_dir = base_dir
        self.processes: dict[int, subprocess.Popen] = {}

    def address(self, account: int) -> str:
        from eth_account import Account

        return Account.from_key(devstack.dev_private_key(account)).address

    @property
    def addresses(self) -> list[str]:
        return [self.address(a) for a in VALIDATOR_DEV_ACCOUNTS]

    def log(self, account: int) -> Path:
        return self.base_dir / f"validator-{account}.log"

    def start(self, account: int) -> None:
        import json

        env = {k: v for k, v in os.environ.items() if k not in self.WITHHELD}
        env.update(
            DJANGO_SETTINGS_MODULE="marketplace.settings",
            CHAIN_RPC_URL=settings.CHAIN_RPC_URL,
            IPFS_API_URL=settings.IPFS_API_URL,
            MARKETPLACE_DATA_DIR=str(self.base_dir / f"node-{account}"),
            PYTHONUNBUFFERED="1",
        )
        log = open(self.log(account), "a")  # noqa: SIM115 - the process writes to it until it stops
        self.processes[account] = subprocess.Popen(
            [
                sys.executable, "manage.py", "run_validator", "--dev-account", str(account),
                "--stake", "--marketplace-url", self.marketplace_url,
                "--contracts", json.dumps(self.contracts), "--poll-seconds", "0.5",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop(self, account: int) -> None:
        process = self.processes.pop(account, None)
        if process is not None:
            stop_celery_worker(process)

    def running(self, account: int) -> bool:
        process = self.processes.get(account)
        return process is not None and process.poll() is None

    def wait_until_registered(self, account: int, timeout: float = 90) -> None:
        """Until the node is staked and its DID document publishes its encryption key."""
        from chain.client import contract_at, get_web3

        escrow = contract_at(get_web3(), "TrainingEscrow", self.contracts["TrainingEscrow"])
        address = self.address(account)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(account):
                raise RuntimeError(f"validator {account} exited:\n{self.log(account).read_text()}")
            log = self.log(account).read_text()
            if escrow.functions.isValidator(address).call() and "is watching" in log:
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"validator {account} did not register:\n{self.log(account).read_text()}"
        )


@pytest.fixture(scope="session")
def validator_nodes(live_server, _deployed_addresses, ipfs_node, tmp_path_factory):
    """Three validator processes, staked on the session's escrow, answering the marketplace's
    requests through the live server's public API."""
    nodes = ValidatorNodes(
        marketplace_url=live_server.url,
        contracts={row["contract"]: row["address"] for row in _deployed_addresses},
        base_dir=tmp_path_factory.mktemp("validators"),
    )
    for account in VALIDATOR_DEV_ACCOUNTS:
        nodes.start(account)
    for account in VALIDATOR_DEV_ACCOUNTS:
        nodes.wait_until_registered(account)
    yield nodes
    for account in list(nodes.processes):
        nodes.stop(account)


@pytest.fixture(scope="session")
def staked_validators(_deployed_addresses, django_db_blocker):
    """The dev validators (accounts 12-14) staked on the session's escrow with an X25519 key in
    their DID documents, for tests that play the worker (and so its validators) in this process.
    The validator processes, when they start, keep the stake and publish their own keys."""
    from eth_account import Account

    from chain.client import contract_at, get_web3
    from marketplace.crypto import x25519_keypair
    from marketplace.did import ENCRYPTION_KEY_ATTRIBUTE

    w3 = get_web3()
    addresses = {row["contract"]: row["address"] for row in _deployed_addresses}
    escrow = contract_at(w3, "TrainingEscrow", addresses["TrainingEscrow"])
    identity = contract_at(w3, "IdentityRegistry", addresses["IdentityRegistry"])
    name = ENCRYPTION_KEY_ATTRIBUTE.encode().ljust(32, b"\0")
    now = w3.eth.get_block("latest")["timestamp"]
    for account in VALIDATOR_DEV_ACCOUNTS:
        address = Account.from_key(devstack.dev_private_key(account)).address
        if not escrow.functions.isValidator(address).call():
            stake = escrow.functions.minStake().call()
            w3.eth.wait_for_transaction_receipt(
                escrow.functions.stake().transact({"from": address, "value": stake})
            )
        published = identity.events.DIDAttributeChanged().get_logs(
            from_block=0, argument_filters={"identity": address}
        )
        if not any(e["args"]["name"] == name and e["args"]["validTo"] > now for e in published):
            # A key of its own only when no validator process published one.
            transact = identity.functions.setAttribute(
                address, name, x25519_keypair()[1], 10 * 365 * 86400
            ).transact({"from": address})
            w3.eth.wait_for_transaction_receipt(transact)
    return [Account.from_key(devstack.dev_private_key(a)).address for a in VALIDATOR_DEV_ACCOUNTS]


def attest_in_process(run) -> int:
    """What the run's validators do, played here with their dev keys, for tests that play the
    worker in this process (the validator processes cannot read uncommitted rows): each open
    request is answered with an EIP-712 attestation of the run's report and payouts, which the
    escrow checks. Returns how many were answered."""
    from eth_account import Account

    from chain.attestations import sign_attestation
    from validators.models import AttestationRequest
    from validators.services import attestation_answer_record, expected_payouts_hash

    keys = {
        Account.from_key(devstack.dev_private_key(a)).address: devstack.dev_private_key(a)
        for a in VALIDATOR_DEV_ACCOUNTS
    }
    payouts = expected_payouts_hash(run.report)
    answered = 0
    for request in AttestationRequest.objects.filter(round__run=run, status="open"):
        signature = sign_attestation(
            keys[request.validator.address], chain_id=settings.CHAIN_ID,
            escrow=request.spec["escrow"], job_id=bytes.fromhex(run.job_id),
            report_hash=bytes.fromhex(run.report_hash[2:]), payouts_hash=bytes.fromhex(payouts[2:]),
        )  # fmt: skip
        attestation_answer_record(
            request_id=request.pk, signature="0x" + signature.hex(),
            report_hash=run.report_hash, payouts_hash_hex=payouts,
        )  # fmt: skip
        answered += 1
    return answered
