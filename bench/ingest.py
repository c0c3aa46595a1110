"""Listing and browsing figures, on a throwaway stack of its own (anvil, IPFS node, database).

    .venv/bin/python bench/ingest.py [--megabytes 100] [--rounds 3] [--listings 10000]
        [--database-url URL] [--only listing|browse]

1. Lists a synthetic CSV of about --megabytes MB from upload to `listed` with the pipeline's
   own services (check and describe, encrypt, pin, read back, sign, relay), and prints its time
   against the sum of a bare pyarrow parse of the same file and an `ipfs add` of the same bytes on
   the same node (with the node's defaults, and with the 1 MiB raw blocks the marketplace adds
   files in), with the peak memory of the process (what a worker needs for that file); --rounds
   times, each round on a file of its own, and the median ratio.
2. Fills the database with --listings listed datasets, serves the app with gunicorn, and prints
   p50/p95 latency of the list API and the browse page under concurrent requests, and the number
   of SQL queries per request at page sizes 20 and 100.

Without --database-url the database is SQLite in a temporary directory; with it (e.g.
postgres://postgres@127.0.0.1:5432/ingestbench, an empty database) the figures are PostgreSQL's.
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--requests", type=int, default=400, help="requests per figure")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--rounds", type=int, default=3, help="listings timed, each on a new file")
    parser.add_argument("--only", choices=["listing", "browse"], help="one of the two figures")
    parser.add_argument("--list-file", type=Path, help=argparse.SUPPRESS)  # the child process
    return parser.parse_args()


def write_csv(path: Path, megabytes: int) -> int:
    import numpy as np

    rng = np.random.default_rng(1)
    cities = np.array(["Paris", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Prague"])
    rows = 0
    with path.open("w") as out:
        out.write("age,income,score,visits,city,segment,note,day\n")
        while out.tell() < megabytes * 1_000_000:
            n = 100_000
            columns = zip(
                rng.integers(18, 90, n), rng.normal(40000, 12000, n).round(2),
                rng.random(n).round(5), rng.poisson(4, n), cities[rng.integers(0, 8, n)],
                rng.integers(0, 50, n), rng.integers(0, 10**9, n), rng.integers(1, 29, n),
                strict=True,
            )  # fmt: skip
            out.write(
                "".join(
                    f"{a},{b},{c},{d},{e},s{f},note-{g},2024-03-{h:02d}\n"
                    for a, b, c, d, e, f, g, h in columns
                )
            )
            rows += n
    return rows


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def behind_proxy(url: str) -> urllib.request.Request:
    """A request as the TLS-terminating proxy in front of the app forwards it."""
    return urllib.request.Request(url, headers={"X-Forwarded-Proto": "https"})


def hammer(urls, clients: int, total: int) -> list[float]:
    """Latencies (ms) of `total` requests from `clients` concurrent clients; `urls` is one URL,
    or a list of them taken in turn."""
    urls = [urls] if isinstance(urls, str) else urls
    timings: list[float] = []
    lock = threading.Lock()
    per_client = max(1, total // clients)
    counter = iter(range(10**9))

    def client():
        for _ in range(per_client):
            with lock:
                url = urls[next(counter) % len(urls)]
            started = time.perf_counter()
            with urllib.request.urlopen(behind_proxy(url), timeout=30) as response:
                response.read()
                assert response.status == 200
            with lock:
                timings.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings


def main() -> None:
    args = parse_args()
    if args.list_file:
        sys.path.insert(0, str(ROOT))
        list_file(args.list_file)
        return
    scratch = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    sys.path.insert(0, str(ROOT))
    from marketplace import devstack

    anvil = devstack.start_anvil()
    ipfs = devstack.start_ipfs(scratch / "ipfs")
    env = {
        "MARKETPLACE_DATA_DIR": str(scratch),
        "CHAIN_RPC_URL": anvil.url,
        "IPFS_API_URL": ipfs.url,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "DJANGO_DEBUG": "1",
        "LOG_LEVEL": "WARNING",
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    os.environ.update(env)
    server = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("deploy_contracts", verbosity=0)
        if args.only != "browse":
            listing_figures(args, scratch)
        if args.only != "listing":
            server = browse_figures(args, scratch, env)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        ipfs.stop()
        anvil.stop()


def listing_figures(args, scratch: Path) -> None:
    import statistics

    import pyarrow.csv as pcsv

    from marketplace import ipfs as storage

    base = scratch / "bench.csv"
    rows = write_csv(base, args.megabytes)
    print(f"File: {base.stat().st_size / 1e6:.0f} MB, {rows:,} rows, 8 columns; "
          f"{args.rounds} rounds, each on the file with a row of its own added")  # fmt: skip
    ratios, layout_ratios, peaks = [], [], []
    for round_ in range(args.rounds):
        path = scratch / f"bench-{round_}.csv"
        # A first row of its own, one byte longer each round: every block of the file differs
        # from the previous rounds' (the node stores none of it yet).
        header, body = base.read_bytes().split(b"\n", 1)
        extra = f"18,1.0,0.5,1,Paris,s0,round-{'x' * round_},2024-03-01\n"
        path.write_bytes(header + b"\n" + extra.encode() + body)
        started = time.perf_counter()
        parsed = sum(batch.num_rows for batch in pcsv.open_csv(str(path)))
        parse_seconds = time.perf_counter() - started
        assert parsed == rows + 1
        add_seconds = timed_add(path)  # `ipfs add` as the node does it by default
        layout_seconds = timed_add(path, **storage.ADD_OPTIONS)  # as the marketplace adds files
        # In a process of its own, so that its peak memory is the listing's alone (as in a
        # worker).
        child = subprocess.run(
            [sys.executable, __file__, "--list-file", str(path)],
            env=os.environ.copy(), capture_output=True, text=True, check=True,
        )  # fmt: skip
        listing_seconds, peak, idle = map(float, child.stdout.split()[-3:])
        ratios.append(listing_seconds / (parse_seconds + add_seconds))
        layout_ratios.append(listing_seconds / (parse_seconds + layout_seconds))
        peaks.append(peak)
        print(f"  round {round_ + 1}: pyarrow parse {parse_seconds:.2f} s, ipfs add "
              f"{add_seconds:.2f} s (defaults) / {layout_seconds:.2f} s (1 MiB raw blocks, as "
              f"the marketplace adds); upload to listed {listing_seconds:.2f} s; ratio "
              f"{ratios[-1]:.2f} / {layout_ratios[-1]:.2f}; peak {peak:.0f} MB")  # fmt: skip
    print(f"upload to listed against pyarrow parse + ipfs add: median ratio "
          f"{statistics.median(ratios):.2f}   (target <= 1.3); against parse + an add with the "
          f"same block layout: {statistics.median(layout_ratios):.2f}")  # fmt: skip
    print(f"peak memory of the listing process: {max(peaks):.0f} MB (idle with Django loaded: "
          f"{idle:.0f} MB)   (target <= 400 MB)")  # fmt: skip


def timed_add(path: Path, **options) -> float:
    """Seconds to add and pin `path` on the node (then unpinned)."""
    from marketplace.ipfs import ipfs_client

    with ipfs_client() as client:
        started = time.perf_counter()
        cid = client.add(str(path), pin=True, **options)["Hash"]
        seconds = time.perf_counter() - started
        client.pin.rm(cid)
    return seconds


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries the parent's
    high-water mark across fork + exec into it, which would count the bench's own pages."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def list_file(path: Path) -> None:
    """The child process: list `path` from upload to `listed`; prints seconds, peak and idle MB."""
    import django

    django.setup()
    from eth_account import Account

    import datasets.profiling  # noqa: F401 - loaded as a worker process loads it when it starts
    from datasets import demo, selectors, services
    from datasets.models import Dataset

    owner = demo.demo_owner(1)
    idle = peak_rss_mb()
    started = time.perf_counter()
    dataset = services.dataset_create(
        owner=owner, upload=path, original_filename="bench.csv", title="Bench",
        license="CC0-1.0", price_wei=1, enqueue=False,
    )  # fmt: skip
    services.dataset_process(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.AWAITING_SIGNATURE, dataset.status_message
    typed = selectors.dataset_signing_request(dataset=dataset)
    message = dict(typed["message"])
    for key in ("price", "parentId", "nonce", "deadline"):
        message[key] = int(message[key])
    signature = Account.sign_typed_data(
        demo.dev_key(1), full_message={**typed, "message": message}
    ).signature.to_0x_hex()
    services.dataset_signature_submit(
        dataset_id=dataset.pk, user=owner, signature=signature, enqueue=False
    )
    services.dataset_register(dataset_id=dataset.pk)
    seconds = time.perf_counter() - started
    dataset.refresh_from_db()
    assert dataset.status == Dataset.Status.LISTED, dataset.status_message
    peak = peak_rss_mb()
    print(f"{seconds:.3f} {peak:.1f} {idle:.1f}")


def browse_queries(count: int) -> dict[str, list[str]]:
    """Query strings of each kind a visitor asks, varied (words, filters, sort, first pages);
    the words are those `listing_rows` writes."""
    orderings = ["-created", "created", "price_wei", "-price_wei", "-rows", "rows"]
    narrow = [rare_word(n * 37 % RARE_WORDS) for n in range(50)] + [
        str(n * 7919 % count) for n in range(1, 51)
    ]
    kinds: dict[str, list[str]] = {key: [] for key in (
        "no filters", "filter only", "broad search", "narrow search", "search + filter + sort",
    )}  # fmt: skip
    for i in range(200):
        ordering, page, topic = orderings[i % 6], 1 + i % 3, TOPICS[i % 8]
        license, price = LICENSES[i % 4], 10**15 * (100 + 50 * (i % 9))
        kinds["no filters"].append(f"ordering={ordering}&page={page}")
        kinds["filter only"].append(
            f"license={license}&tag={TOPICS[(i + 3) % 8]}&max_price_wei={price}&ordering={ordering}"
            if i % 2
            else f"license={license}&min_rows={10**5 * (i % 50)}&ordering={ordering}&page={page}"
        )
        kinds["broad search"].append(f"search={topic}&ordering={ordering}&page={page}")
        kinds["narrow search"].append(f"search={narrow[i % len(narrow)]}&ordering={ordering}")
        kinds["search + filter + sort"].append(
            f"search={topic}&license={license}&max_price_wei={price}&ordering={ordering}"
        )
    return kinds


def browse_figures(args, scratch: Path, env: dict):
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    fill_listings(args.listings)
    print(f"\n{args.listings:,} listings in {connection.vendor}, {os.cpu_count()} CPUs")
    kinds = browse_queries(args.listings)

    client = Client(HTTP_HOST="127.0.0.1")
    for kind, queries in kinds.items():
        counts = []
        for size in (20, 100):
            cache.clear()
            with CaptureQueriesContext(connection) as captured:
                response = client.get(f"/api/datasets?{queries[0]}&page_size={size}")
            assert response.status_code == 200, response.content
            counts.append(len(captured))
        with CaptureQueriesContext(connection) as again:
            client.get(f"/api/datasets?{queries[0]}&page_size=100")
        cache.clear()
        with CaptureQueriesContext(connection) as page:
            client.get(f"/datasets/?{queries[0]}")
        print(f"SQL queries per request, {kind} ({queries[0]}): list API page size 20: "
              f"{counts[0]}, page size 100: {counts[1]} (again, from the page cache: "
              f"{len(again)}); browse page: {len(page)}")  # fmt: skip

    # Served as in production: DEBUG off, static files from the manifest, behind a TLS proxy;
    # with no cache, so that no request is answered from a cached page.
    (scratch / "bench_settings.py").write_text(
        "from marketplace.settings import *  # noqa: F403\n"
        "CACHES = {**CACHES, 'default': "  # noqa: F405
        "{'BACKEND': 'django.core.cache.backends.dummy.DummyCache'}}\n"
    )
    production = {
        **os.environ, **env, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "MARKETPLACE_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }  # fmt: skip
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT, env=production, check=True,
    )  # fmt: skip
    port = devstack_free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--log-level", "warning"],
        cwd=ROOT, env={**production, "DJANGO_SETTINGS_MODULE": "bench_settings",
                       "PYTHONPATH": f"{scratch}{os.pathsep}{ROOT}"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # 4 workers import the app at once, on a busy machine
    while True:
        try:
            urllib.request.urlopen(behind_proxy(base + "/api/datasets?page_size=1"), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.3)
    print(f"p50 / p95 with {args.clients} concurrent clients, {args.requests} requests each, "
          f"no cache (target p95 <= 50 ms):")  # fmt: skip
    hammer([f"{base}/api/datasets?{q}" for q in kinds["no filters"]], args.clients, 50)  # warm
    for kind, queries in kinds.items():
        for label, path in (("list API", "/api/datasets?"), ("browse page", "/datasets/?")):
            urls = [base + path + q for q in queries]
            hammer(urls, args.clients, args.clients * 3)  # warm up
            timings = hammer(urls, args.clients, args.requests)
            p50, p95 = percentile(timings, 0.5), percentile(timings, 0.95)
            print(f"  {kind + ', ' + label + ':':40s} p50 {p50:5.1f} ms, p95 {p95:5.1f} ms")
    return server


TOPICS = ["heart", "wine", "taxi", "energy", "retail", "weather", "genome", "traffic"]
LICENSES = ["CC0-1.0", "CC-BY-4.0", "ODbL-1.0", "MIT"]  # each for 1 listing in 4, at random
RARE_WORDS = 5000  # each in about 1 listing in 2,500
FILLER = (
    "collected measured daily hourly records sensors survey public open anonymised cleaned "
    "values columns sample region period source quality annotated labelled study export"
).split()


def rare_word(n: int) -> str:
    """The n-th word of a made-up vocabulary (babababa, kibababa, ...)."""
    syllables = ["ba", "ki", "ro", "su", "me", "ta", "lo", "vu", "ne", "pi", "da", "go"]
    word = ""
    for _ in range(4):
        n, rest = divmod(n, len(syllables))
        word += syllables[rest]
    return word


def listing_rows(count: int, owners):
    """`count` unsaved listed datasets: a topic word shared by 1 in 8 ("broad"), "data" in
    every one, two made-up words shared by a few dozen at most ("narrow"), and the listing's
    number in its title; licences, prices, sizes and dates varied."""
    import random
    from datetime import UTC, datetime, timedelta

    from datasets.models import Dataset

    rng = random.Random(1)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(count):
        word = TOPICS[i % len(TOPICS)]
        rare = [rare_word(rng.randrange(RARE_WORDS)) for _ in range(2)]
        columns = [{"name": f"{word}_{c}", "type": "float"} for c in range(12)]
        title = f"{word.capitalize()} measurements {i}"
        description = (
            f"Synthetic {word} data, set {i}: "
            + " ".join(rng.choice(FILLER) for _ in range(40))
            + f" {rare[0]} {rare[1]}."
        )
        tags = [word, "synthetic", rare[0]]
        created = start + timedelta(minutes=i, seconds=rng.randrange(60))
        yield Dataset(
            owner=owners[i % len(owners)], title=title, description=description,
            excerpt=description[:200], license=rng.choice(LICENSES), tags=tags,
            price_wei=10**15 * rng.randrange(1, 1000), status=Dataset.Status.LISTED,
            stage=Dataset.Stage.DONE, progress=100, rows=rng.randrange(10, 10**7),
            column_count=12, columns=columns, original_filename="x.csv",
            search_text="\n".join([title, description, " ".join(tags)]
                                  + [" ".join(c["name"] for c in columns)]).lower(),
            tag_index="".join(f"|{t}" for t in tags) + "|",
            created=created, updated=created, listed_at=created,
        )  # fmt: skip


def fill_listings(count: int) -> None:
    """`count` listed datasets (see `listing_rows`), in batches: COPY on PostgreSQL."""
    from django.db import connection

    from datasets.demo import demo_owner
    from datasets.models import Dataset

    started = time.perf_counter()
    owners = [demo_owner(n) for n in range(1, 6)]
    fields = [f for f in Dataset._meta.concrete_fields if not f.primary_key]
    rows = listing_rows(count, owners)
    if connection.vendor == "postgresql":
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY datasets_dataset ({columns}) FROM STDIN") as copy,
        ):
            for dataset in rows:
                copy.write_row(
                    [f.get_db_prep_save(getattr(dataset, f.attname), connection) for f in fields]
                )
    else:
        batch = []
        for dataset in rows:
            batch.append(dataset)
            if len(batch) == 5000:
                Dataset.objects.bulk_create(batch)
                batch = []
        Dataset.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        # As autovacuum does after a bulk load (PostgreSQL: statistics and the visibility map).
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"filled {count:,} listings in {time.perf_counter() - started:.1f} s")


def devstack_free_port() -> int:
    from marketplace.devstack import free_port

    return free_port()


if __name__ == "__main__":
    main()
