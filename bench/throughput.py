"""Listings per minute and training runs per minute with 1 and 2 worker processes, on a
throwaway stack of its own.

    .venv/bin/python bench/throughput.py [--workers 1,2] [--listings 6] [--runs 4]
        [--rows 5000] [--columns 10] [--datasets-per-run 2] [--model random_forest]
        [--redis-db 12] [--sqlite]

The stack: anvil and an IPFS node (offline, loopback, their own ports and repo), a fresh
PostgreSQL database (`createdb` on 127.0.0.1 as postgres, dropped at the end; SQLite in the
scratch folder with --sqlite or when PostgreSQL does not answer), the Redis on 127.0.0.1:6379
with a database number of its own (--redis-db, which must be empty; it is flushed at the end)
and queues named for this process, the contracts deployed, the web app served by gunicorn on a
loopback port, and the three validator processes of the Procfile (`manage.py run_validator
--dev-account 12/13/14 --stake`), which reach the marketplace through that web app.

For each worker count N of --workers it starts N Celery worker processes, each `celery worker
--concurrency 1` consuming both the default queue and the training queue (so N processes do
tasks in parallel), then:

1. Listings per minute: --listings uploads are made at once with the services the upload form
   and the API call (each a synthetic CSV of --rows rows and --columns columns, all different),
   owned by anvil dev users 1-9; each is signed with its owner's dev key as soon as it awaits its
   signature (an owner signs one listing at a time: its registry nonce is in the signature).
   Timed from the first upload to the last one `listed` (checked, encrypted, pinned, relayed).
2. Runs per minute: --runs training runs over that round's listings are created, paid into the
   escrow by dev users and reported paid as the run page does, all at once; timed from the first
   creation to the last run `completed` (trained by a worker, re-computed and attested by the
   validators, settled on-chain).

Then it stops the workers, and prints the core count, the sizes and both figures per N. Every
process it started, the database, the Redis database and the scratch folder are removed on exit,
also on Ctrl-C. The machine's other load shares the cores: the load average is printed with the
figures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketplace import devstack  # noqa: E402

OWNER_ACCOUNTS = range(1, 10)  # anvil dev accounts 1-9 are the users'; 10 on the marketplace's
VALIDATOR_ACCOUNTS = (12, 13, 14)
POSTGRES = ("-h", "127.0.0.1", "-U", "postgres")
POLL_SECONDS = 0.2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker process counts, comma-separated")
    parser.add_argument("--listings", type=int, default=6, help="uploads made at once, per round")
    parser.add_argument("--runs", type=int, default=4, help="runs paid at once, per round")
    parser.add_argument("--rows", type=int, default=5_000, help="rows of each uploaded CSV")
    parser.add_argument("--columns", type=int, default=10, help="columns of each uploaded CSV")
    parser.add_argument("--datasets-per-run", type=int, default=2)
    parser.add_argument("--model", default="random_forest", help="classification model of runs")
    parser.add_argument("--redis-db", type=int, default=12, help="an empty Redis database number")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per phase")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    if args.columns < 2 or args.listings < 1 or args.runs < 0:
        parser.error("at least 2 columns and 1 listing")
    if args.datasets_per_run > args.listings:
        parser.error("--datasets-per-run is more than the listings of a round")
    return args


class Failed(Exception):
    pass


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """Everything the bench starts, so that `close()` removes it all."""

    def __init__(self, args) -> None:
        self.args = args
        self.scratch = Path(tempfile.mkdtemp(prefix="throughput-bench-"))
        self.tag = f"throughput-{os.getpid()}"
        self.nodes: list[devstack.Node] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.database = ""
        self.redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
        self.redis_claimed = False
        self.env: dict[str, str] = {}
        self.web_url = ""

    # start-up

    def start(self) -> None:
        import redis

        if not devstack.redis_answers(self.redis_url):
            raise Failed(f"Redis does not answer at {self.redis_url} (start it: make up does)")
        client = redis.Redis.from_url(self.redis_url)
        if client.dbsize():
            raise Failed(f"Redis database {self.args.redis_db} is in use: choose --redis-db")
        self.redis_claimed = True
        anvil = devstack.start_anvil()
        self.nodes.append(anvil)
        ipfs = devstack.start_ipfs(self.scratch / "ipfs")  # configured offline before it starts
        self.nodes.append(ipfs)
        self.env = {
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DJANGO_DEBUG": "1",
            "MARKETPLACE_DATA_DIR": str(self.scratch),
            "MARKETPLACE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "CHAIN_RPC_URL": anvil.url,
            "IPFS_API_URL": ipfs.url,
            "CELERY_BROKER_URL": self.redis_url,
            "THROTTLE_REDIS_URL": self.redis_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.tag,
            "CELERY_TRAINING_QUEUE": f"{self.tag}-training",
            "LOG_LEVEL": "INFO",  # the processes' logs, in the scratch folder
            "PYTHONUNBUFFERED": "1",
        }
        self.database = "" if self.args.sqlite else self._createdb()
        if self.database:
            self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{self.database}"
        os.environ.update({**self.env, "LOG_LEVEL": "WARNING"})

        import django

        django.setup()
        from django.core.management import call_command

        with contextlib.redirect_stdout(io.StringIO()):
            call_command("migrate", verbosity=0)
            call_command("deploy_contracts", verbosity=0)
        self._serve()
        self._start_validators()

    def _createdb(self) -> str:
        name = self.tag.replace("-", "_")
        created = subprocess.run(
            ["createdb", *POSTGRES, name], capture_output=True, text=True, timeout=60
        )
        if created.returncode != 0:
            print(f"PostgreSQL refused a database ({created.stderr.strip()}): using SQLite")
            return ""
        return name

    def _popen(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        log = open(self.scratch / f"{name}.log", "w")  # noqa: SIM115 - the process keeps it
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.processes[name] = process
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.scratch / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _serve(self) -> None:
        port = devstack.free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        web = self._popen(
            "web",
            [sys.executable, "-m", "gunicorn", "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--threads", "4", "--log-level", "warning"],
            {**os.environ, **self.env},
        )  # fmt: skip

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.web_url}/api/datasets?page_size=1", timeout=2):
                    return True
            except OSError:
                return False

        self._wait(answers, "the web app", 60, web, "web")

    def _start_validators(self) -> None:
        from django.conf import settings
        from eth_account import Account

        from chain.client import contract_at, get_web3
        from chain.models import Deployment

        contracts = dict(
            Deployment.objects.filter(chain_id=settings.CHAIN_ID).values_list("contract", "address")
        )
        # As a validator host runs it: none of the marketplace's database, broker or master key.
        withheld = ("DATABASE_URL", "MARKETPLACE_MASTER_KEY", "CELERY_BROKER_URL",
                    "THROTTLE_REDIS_URL")  # fmt: skip
        base = {k: v for k, v in {**os.environ, **self.env}.items() if k not in withheld}
        for account in VALIDATOR_ACCOUNTS:
            self._popen(
                f"validator-{account}",
                [sys.executable, "manage.py", "run_validator", "--dev-account", str(account),
                 "--stake", "--marketplace-url", self.web_url, "--contracts",
                 json.dumps(contracts), "--poll-seconds", "0.5"],
                {**base, "MARKETPLACE_DATA_DIR": str(self.scratch / f"validator-{account}")},
            )  # fmt: skip
        escrow = contract_at(get_web3(), "TrainingEscrow", contracts["TrainingEscrow"])
        for account in VALIDATOR_ACCOUNTS:
            name = f"validator-{account}"
            address = Account.from_key(devstack.dev_private_key(account)).address
            self._wait(
                lambda a=address, n=name: escrow.functions.isValidator(a).call()
                and "is watching" in self.log_tail(n, 1000),
                f"validator {account}", 120, self.processes[name], name,
            )  # fmt: skip

    def _wait(self, check, what: str, timeout: float, process, log: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if process.poll() is not None:
                raise Failed(f"{what} exited ({process.returncode}):\n{self.log_tail(log)}")
            if time.monotonic() > deadline:
                raise Failed(f"{what} did not answer within {timeout:.0f} s:\n{self.log_tail(log)}")
            time.sleep(0.3)

    # workers

    def start_workers(self, count: int) -> list[str]:
        from marketplace.celery import app

        names = []
        queues = f"{self.env['CELERY_TASK_DEFAULT_QUEUE']},{self.env['CELERY_TRAINING_QUEUE']}"
        for i in range(1, count + 1):
            name = f"worker-{count}-{i}"
            hostname = f"{name}-{self.tag}@localhost"
            self._popen(
                name,
                [sys.executable, "-m", "celery", "-A", "marketplace", "worker",
                 "--hostname", hostname, "--queues", queues, "--concurrency", "1",
                 "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
                {**os.environ, **self.env},
            )  # fmt: skip
            names.append((name, hostname))
        for name, hostname in names:
            self._wait(
                lambda h=hostname: bool(app.control.ping(destination=[h], timeout=0.5)),
                name, 90, self.processes[name], name,
            )  # fmt: skip
        return [name for name, _ in names]

    def stop(self, name: str, patience: float = 30) -> None:
        """Stop a process of ours: a worker's warm shutdown (it waits for the task it runs, up
        to `patience` seconds; its child processes end with it), then its process group killed."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    # clean-up

    def close(self) -> None:
        """Everything removed; what still runs (after a failure or Ctrl-C) is not waited for."""
        for name in list(self.processes):
            try:
                self.stop(name, patience=3)
            except Exception as exc:  # noqa: BLE001 - remove the rest regardless
                print(f"could not stop {name}: {exc}", file=sys.stderr)
        for node in reversed(self.nodes):
            node.stop()
        if self.database:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: BLE001, S110 - Django may not be set up yet
                pass
            subprocess.run(
                ["dropdb", *POSTGRES, "--if-exists", "--force", self.database],
                capture_output=True, timeout=60,
            )  # fmt: skip
        if self.redis_claimed:
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()
        shutil.rmtree(self.scratch, ignore_errors=True)


# --- the figures -------------------------------------------------------------------------------


def write_csv(path: Path, rows: int, columns: int, seed: int) -> None:
    """Numeric features x0.. and a 0/1 `label` that depends on them (the same rule in every
    file, so that runs over several files learn one thing); rows of its own for each seed."""
    import numpy as np

    features = columns - 1
    weights = np.random.default_rng(0).normal(size=features)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).round(5)
    label = (x @ weights + rng.normal(0, 0.5, rows) > 0).astype(int)
    header = ",".join([f"x{i}" for i in range(features)] + ["label"])
    body = np.column_stack([x, label])
    formats = ["%.5f"] * features + ["%d"]
    np.savetxt(path, body, delimiter=",", header=header, comments="", fmt=formats)


def sign_listing(dataset, number: int) -> str:
    """The owner's EIP-712 signature of the listing, as the wallet makes it."""
    from eth_account import Account

    from datasets import selectors

    typed = selectors.dataset_signing_request(dataset=dataset)
    message = dict(typed["message"])
    for key in ("price", "parentId", "nonce", "deadline"):
        message[key] = int(message[key])
    signed = Account.sign_typed_data(
        devstack.dev_private_key(number), full_message={**typed, "message": message}
    )
    return signed.signature.to_0x_hex()


def dev_user(number: int):
    from eth_account import Account

    from marketplace.services import user_for_address

    return user_for_address(address=Account.from_key(devstack.dev_private_key(number)).address)


def list_at_once(stack: Stack, round_: int, folder: Path) -> tuple[float, list]:
    """Seconds from the first upload to the last listing `listed`, and the listings."""
    from datasets import services
    from datasets.models import Dataset

    args = stack.args
    Status = Dataset.Status
    files = []
    for i in range(args.listings):
        path = folder / f"round-{round_}-{i}.csv"
        write_csv(path, args.rows, args.columns, seed=1000 * round_ + i + 1)
        files.append(path)
    owners = {n: dev_user(n) for n in OWNER_ACCOUNTS}
    numbers = [OWNER_ACCOUNTS[i % len(OWNER_ACCOUNTS)] for i in range(args.listings)]
    started = time.monotonic()
    ids = []
    for i, (path, number) in enumerate(zip(files, numbers, strict=True)):
        dataset = services.dataset_create(
            owner=owners[number], upload=path, original_filename=path.name,
            title=f"Throughput round {round_} file {i}", license="CC-BY-4.0",
            price_wei=10**15, tags=["synthetic"],
        )  # fmt: skip
        ids.append(dataset.pk)
    owner_of = dict(zip(ids, numbers, strict=True))
    deadline = started + args.timeout
    while True:
        statuses = dict(Dataset.objects.filter(pk__in=ids).values_list("pk", "status"))
        stopped = {pk: s for pk, s in statuses.items() if s in (Status.REJECTED, Status.FAILED)}
        if stopped:
            messages = Dataset.objects.filter(pk__in=stopped).values_list("pk", "status_message")
            raise Failed(f"listings stopped: {list(messages)}")
        if all(s == Status.LISTED for s in statuses.values()):
            break
        # An owner signs one listing at a time: the next once the previous one is on-chain.
        busy = {owner_of[pk] for pk, s in statuses.items() if s == Status.REGISTERING}
        for pk in sorted(pk for pk, s in statuses.items() if s == Status.AWAITING_SIGNATURE):
            number = owner_of[pk]
            if number in busy:
                continue
            dataset = Dataset.objects.get(pk=pk)
            services.dataset_signature_submit(
                dataset_id=pk, user=owners[number], signature=sign_listing(dataset, number)
            )
            busy.add(number)
        if time.monotonic() > deadline:
            raise Failed(f"listings not listed within {args.timeout:.0f} s: {statuses}")
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    return seconds, list(Dataset.objects.filter(pk__in=ids).order_by("pk"))


def train_at_once(stack: Stack, listed: list) -> tuple[float, float]:
    """Seconds from the first run's creation to the last run `completed` (settled), and to the
    last run's report recorded (the workers' part done; the validators' answers are awaited)."""
    from chain.client import get_web3
    from training import services
    from training.models import TrainingRun

    args = stack.args
    Status = TrainingRun.Status
    w3 = get_web3()
    started = time.monotonic()
    paid = []
    for i in range(args.runs):
        number = OWNER_ACCOUNTS[-1 - i % len(OWNER_ACCOUNTS)]  # buyers from dev user 9 down
        buyer = dev_user(number)
        chosen = [listed[(i + j) % len(listed)].pk for j in range(args.datasets_per_run)]
        run = services.training_run_create(
            buyer=buyer, dataset_ids=chosen, target_column="label", model=args.model
        )
        escrow = services.training_run_escrow_request(run)
        tx_hash = w3.eth.send_transaction(
            {"from": buyer.address, "to": escrow["address"], "data": escrow["data"],
             "value": int(escrow["value_wei"])}
        )  # fmt: skip
        paid.append((run, tx_hash))
    for run, tx_hash in paid:
        w3.eth.wait_for_transaction_receipt(tx_hash)
        # What the run page does once the wallet's payment is mined.
        services.training_run_funding_hint(run=run, tx_hash=tx_hash.to_0x_hex())
    ids = [run.pk for run, _ in paid]
    deadline = started + args.timeout
    trained = None
    while True:
        rows = TrainingRun.objects.filter(pk__in=ids).values_list("pk", "status", "report_hash")
        statuses = {pk: status for pk, status, _ in rows}
        if trained is None and all(report for _, _, report in rows):
            trained = time.monotonic() - started
        stopped = [pk for pk, s in statuses.items() if s in (Status.FAILED, Status.REFUNDING)]
        if stopped:
            errors = TrainingRun.objects.filter(pk__in=stopped).values_list("pk", "error")
            raise Failed(f"runs failed: {list(errors)}")
        if all(s == Status.COMPLETED for s in statuses.values()):
            break
        if time.monotonic() > deadline:
            raise Failed(f"runs not completed within {args.timeout:.0f} s: {statuses}")
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    return seconds, trained or seconds


def per_minute(count: int, seconds: float) -> float:
    return count * 60 / seconds if seconds else float("nan")


def main() -> int:
    args = parse_args()

    def terminated(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started ignoring it
    stack = Stack(args)
    rows = []
    try:
        stack.start()
        from django.db import connection

        database = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
        folder = stack.scratch / "files"
        folder.mkdir()
        for round_, count in enumerate(args.workers, start=1):
            names = stack.start_workers(count)
            load = os.getloadavg()[0]
            try:
                list_seconds, listed = list_at_once(stack, round_, folder)
                print(f"{count} worker process(es): {args.listings} listings in "
                      f"{list_seconds:.1f} s", flush=True)  # fmt: skip
                run_seconds, trained_seconds = (
                    train_at_once(stack, listed) if args.runs else (0.0, 0.0)
                )
                if args.runs:
                    print(f"{count} worker process(es): {args.runs} runs in {run_seconds:.1f} s "
                          f"(all trained by the workers after {trained_seconds:.1f} s)",
                          flush=True)  # fmt: skip
            except Failed:
                for name in names:
                    print(f"--- {name} log:\n{stack.log_tail(name)}", file=sys.stderr)
                raise
            for name in names:  # idle: each stops at once
                stack.stop(name)
            rows.append((count, list_seconds, run_seconds, trained_seconds, load))
    except Failed as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()

    size = file_size(args)
    print()
    print(f"Machine: {os.cpu_count()} cores; database {database}; 3 validator processes "
          "(quorum 2), a gunicorn web app, anvil and an IPFS node on the same machine")  # fmt: skip
    print(f"Listings: {args.listings} uploads at once, each a CSV of {args.rows:,} rows x "
          f"{args.columns} columns (~{size / 1e6:.2f} MB), upload -> listed")  # fmt: skip
    if args.runs:
        print(f"Runs: {args.runs} runs at once, each on {args.datasets_per_run} of those listings "
              f"({args.datasets_per_run * args.rows:,} rows), model {args.model}, creation -> "
              "settled")  # fmt: skip
    print("Worker processes: N x `celery worker --concurrency 1`, each on the default and the "
          "training queue")  # fmt: skip
    print()
    print("(s): the phase's seconds. trained (s): until the workers had recorded every run's")
    print("report; from then on the runs wait only on the validators' attestations and settling.")
    print()
    header = ("N", "listings/min", "(s)", "runs/min", "(s)", "trained (s)", "load avg at start")
    widths = [2, 12, 6, 8, 6, 11, 17]
    print(" | ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for count, list_seconds, run_seconds, trained_seconds, load in rows:
        cells = [
            f"{count}", f"{per_minute(args.listings, list_seconds):.2f}", f"{list_seconds:.1f}",
            f"{per_minute(args.runs, run_seconds):.2f}" if args.runs else "-",
            f"{run_seconds:.1f}" if args.runs else "-",
            f"{trained_seconds:.1f}" if args.runs else "-", f"{load:.2f}",
        ]  # fmt: skip
        print(" | ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    return 0


def file_size(args) -> int:
    """The size of an uploaded file (one written again: the scratch folder is gone)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.csv"
        write_csv(path, args.rows, args.columns, seed=1)
        return path.stat().st_size


if __name__ == "__main__":
    sys.exit(main())
