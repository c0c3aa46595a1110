"""Production serving: Procfile.prod runs gunicorn, one Celery beat, a worker for the default queue
and one for the training queue; production settings send training runs to that queue."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from marketplace.devstack import free_port
from tests.conftest import _database_url_for_worker
from tests.marketplace.test_settings import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile.prod"


def processes() -> dict[str, str]:
    """Procfile.prod's lines: process name -> the shell command that runs it."""
    found = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        assert sep and name.strip().isidentifier(), f"not a Procfile line: {line!r}"
        assert name.strip() not in found, f"{name} twice"
        found[name.strip()] = command.strip()
    return found


def words(command: str, env: dict | None = None) -> list[str]:
    """The command's words as the shell that runs the line expands them with this environment."""
    result = subprocess.run(
        ["sh", "-c", f'set -- {command}; printf "%s\\n" "$@"'],
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def option(argv: list[str], *names: str) -> str | None:
    for i, word in enumerate(argv):
        if word in names:
            return argv[i + 1]
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def celery_role(argv: list[str]) -> str | None:
    """'beat' or 'worker' for a `celery -A marketplace ...` command, else None."""
    if not argv or not argv[0:2] == ["exec", ".venv/bin/celery"]:
        return None
    return next((w for w in argv if w in ("beat", "worker")), None)


def production_settings(names: list[str], tmp_path: Path, **env) -> dict:
    """Settings as a production process computes them at start-up (DJANGO_DEBUG=0)."""
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_"))}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **clean,
            **PRODUCTION_ENV,
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "MARKETPLACE_DATA_DIR": str(tmp_path),
            **env,
        },  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_procfile_prod_runs_exactly_one_beat():
    beats = [n for n, c in processes().items() if celery_role(words(c)) == "beat"]
    embedded = [n for n, c in processes().items() if {"-B", "--beat"} & set(words(c))]

    assert beats == ["beat"]
    assert embedded == []  # no worker runs a beat of its own


def test_procfile_prod_serves_the_web_with_gunicorn_from_the_environment():
    default = words(processes()["web"])
    configured = words(
        processes()["web"],
        {"WEB_BIND": "0.0.0.0:9000", "WEB_CONCURRENCY": "5", "WEB_THREADS": "3"},
    )

    assert default[:3] == ["exec", ".venv/bin/gunicorn", "marketplace.wsgi"]
    assert option(default, "--bind", "-b") == "127.0.0.1:8000"
    assert int(option(default, "--workers", "-w")) >= 3  # 2 per CPU + 1
    assert int(option(default, "--threads")) >= 1
    assert option(default, "--access-logfile") == "-"  # stdout
    assert option(configured, "--bind", "-b") == "0.0.0.0:9000"
    assert option(configured, "--workers", "-w") == "5"
    assert option(configured, "--threads") == "3"


def test_procfile_prod_has_a_worker_for_each_queue(tmp_path):
    commands = {n: words(c) for n, c in processes().items()}
    workers = {n: argv for n, argv in commands.items() if celery_role(argv) == "worker"}
    production = production_settings(["CELERY_TRAINING_QUEUE"], tmp_path)

    assert set(workers) == {"worker", "training"}
    assert option(workers["worker"], "--queues", "-Q") is None  # the default queue
    assert option(workers["training"], "--queues", "-Q") == production["CELERY_TRAINING_QUEUE"]
    assert option(workers["training"], "--queues", "-Q") == "training"
    renamed = words(processes()["training"], {"CELERY_TRAINING_QUEUE": "gpu"})
    assert option(renamed, "--queues", "-Q") == "gpu"
    hostnames = [option(argv, "--hostname", "-n") for argv in workers.values()]
    assert len(set(hostnames)) == 2  # two workers on one host keep distinct names


def test_procfile_prod_starts_nothing_that_migrates_deploys_or_validates():
    text = "\n".join(processes().values())

    for step in ("prepare_stack", "migrate", "deploy_contracts", "collectstatic", "run_validator"):
        assert step not in text
    assert "devstack" not in text  # no local chain or IPFS node: production names its own


def test_production_routes_training_runs_to_the_training_queue(tmp_path):
    script = (
        "import json, django; django.setup(); from marketplace.celery import app; "
        "app.loader.import_default_modules(); "
        "names = ['training.run', 'training.settle', 'training.refund', 'training.resume_stalled',"
        " 'datasets.process', 'datasets.register', 'chain.index']; "
        "print(json.dumps({n: app.amqp.router.route({}, n)['queue'].name for n in names}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DJANGO_"))}
    env = {
        **clean, **PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "MARKETPLACE_DATA_DIR": str(tmp_path),
    }  # fmt: skip

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "training.run": "training",
        # Short chain steps and the listing pipeline stay on the default queue.
        "training.settle": "marketplace",
        "training.refund": "marketplace",
        "training.resume_stalled": "marketplace",
        "datasets.process": "marketplace",
        "datasets.register": "marketplace",
        "chain.index": "marketplace",
    }


def test_development_keeps_training_on_the_default_queue(tmp_path):
    figures = production_settings(
        ["CELERY_TRAINING_QUEUE", "CELERY_TASK_DEFAULT_QUEUE", "CELERY_TASK_ROUTES"],
        tmp_path,
        DJANGO_DEBUG="1",
    )

    assert figures["CELERY_TRAINING_QUEUE"] == figures["CELERY_TASK_DEFAULT_QUEUE"]
    assert figures["CELERY_TASK_ROUTES"] == {"training.run": {"queue": "marketplace"}}


@pytest.mark.django_db  # the test database, migrated, for the server process too
def test_gunicorn_serves_healthz_with_production_settings(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST", "WEB_"))}
    env.update(PRODUCTION_ENV)
    env.update(
        MARKETPLACE_DATA_DIR=str(tmp_path),
        DATABASE_URL=_database_url_for_worker(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",
        # Nodes that do not answer (free loopback ports): the page must still be served.
        CHAIN_RPC_URL=f"http://127.0.0.1:{free_port()}",
        IPFS_API_URL=f"http://127.0.0.1:{free_port()}",
    )
    server = subprocess.Popen(
        ["sh", "-c", processes()["web"]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz",
        # As the TLS-terminating proxy in front of it forwards a request.
        headers={"Host": "marketplace.example.org", "X-Forwarded-Proto": "https"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, body = response.status, response.read()
                break
            except urllib.error.HTTPError as exc:  # 503: a node is down
                status, body = exc.code, exc.read()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
    finally:
        server.terminate()
        stdout, stderr = server.communicate(timeout=30)

    assert body.startswith(b"{"), stderr
    health = json.loads(body)
    assert status == 503  # the chain and the IPFS node were left down on purpose
    assert health["parts"]["database"]["ok"], health
    assert health["parts"]["redis"]["ok"], health
    assert not health["parts"]["chain"]["ok"]
    assert "GET /healthz" in stdout, stdout + stderr  # the access log goes to stdout
    assert "Booting worker" in stderr
