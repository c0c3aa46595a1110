"""With a Redis broker, a message not acknowledged within the visibility timeout is delivered again
to another worker. Our steps are acknowledged when they finish and a countdown's message stays
unacknowledged until it has run, so the timeout must outlast every task's time limit, and every
countdown plus the time limit of the task it delays."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("marketplace", "datasets", "training", "chain", "validators")
# Every countdown or ETA the product code passes, and what covers it in `figures` below.
KNOWN_DELAYS = {
    "countdown=countdown",  # queue_settlement passes its caller's on
    "countdown=settings.ATTESTATION_DEADLINE_CHECK_SECONDS",  # a run's settlement deadline
    "countdown=min(2**self.request.retries, 60)",  # training.run's retries
}


def figures() -> dict:
    """The visibility timeout, each registered task's limits, and the countdowns, as this
    process's settings and Celery app have them."""
    from django.conf import settings

    from marketplace.celery import app

    app.loader.import_default_modules()
    tasks = {}
    for name, task in app.tasks.items():
        backoff = task.retry_backoff_max if getattr(task, "autoretry_for", ()) else 0
        tasks[name] = {"time_limit": task.time_limit, "retry_backoff_max": backoff}
    return {
        "visibility_timeout": settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"],
        "in_the_app": app.conf.broker_transport_options["visibility_timeout"],
        "tasks": tasks,
        "deadline_check": settings.ATTESTATION_DEADLINE_CHECK_SECONDS,
        "attestation_timeout": settings.ATTESTATION_TIMEOUT_SECONDS,
        # The limits training_run_enqueue sends with each run's message.
        "training_time_limit": settings.TRAINING_TIME_LIMIT_SECONDS,
    }


def assert_outlasts_everything(found: dict) -> None:
    timeout = found["visibility_timeout"]
    tasks = found["tasks"]
    assert isinstance(timeout, int)  # kombu wants whole seconds
    assert found["in_the_app"] == timeout
    for name, task in tasks.items():
        assert task["time_limit"], f"{name} has no time limit"
        assert timeout > task["time_limit"] + task["retry_backoff_max"], name
    assert timeout > found["training_time_limit"]
    assert found["deadline_check"] > found["attestation_timeout"]
    assert timeout > found["deadline_check"] + tasks["training.settle"]["time_limit"]
    assert timeout > 60 + tasks["training.run"]["time_limit"]  # its retries wait up to 60 s


def test_the_visibility_timeout_outlasts_every_task_and_countdown():
    found = figures()

    assert_outlasts_everything(found)
    assert {"training.run", "training.settle", "datasets.process"} <= set(found["tasks"])
    assert found["visibility_timeout"] > 3600  # Celery's default would not do with ours


def test_longer_limits_in_the_environment_raise_the_visibility_timeout(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "MARKETPLACE_DATA_DIR": str(tmp_path),
        "TRAINING_SOFT_TIME_LIMIT_SECONDS": "20000",
        "DATASET_PROCESS_SOFT_TIME_LIMIT": "30000",
        "CELERY_TASK_TIME_LIMIT": "25000",
        "ATTESTATION_TIMEOUT_SECONDS": "86400",
    }
    script = (
        "import json, django; django.setup(); "
        "from tests.marketplace.test_visibility_timeout import figures; "
        "print(json.dumps(figures()))"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["tasks"]["datasets.process"]["time_limit"] == 30060
    assert found["tasks"]["training.run"]["time_limit"] == 20060
    assert found["tasks"]["celery.chord_unlock"]["time_limit"] == 25000
    assert_outlasts_everything(found)


def test_every_countdown_in_the_product_is_one_the_timeout_accounts_for():
    """A new countdown or ETA must be added to the visibility timeout's computation (settings)
    and to KNOWN_DELAYS with what covers it."""
    found = set()
    for package in PRODUCT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            for match in re.finditer(r"\b(countdown|eta)\s*=\s*", text):
                found.add(f"{match.group(1)}={argument(text, match.end())}")

    assert found == KNOWN_DELAYS


def argument(text: str, start: int) -> str:
    """The argument expression starting at `start`, up to its comma or closing bracket."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            if depth == 0:
                return " ".join(text[start:i].split())
            depth -= 1
        elif text[i] in ",\n" and depth == 0:
            return " ".join(text[start:i].split())
    return text[start:].strip()
