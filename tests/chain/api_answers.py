"""The API's answers to a list of requests, from whichever database DATABASE_URL names: run as
`python -m tests.chain.api_answers < requests.json` against a rebuilt database, and called in the
test's own process against the original one, so both are asked the same way.

A request is {"as": an address to sign in as (forced, as the tests do) or null, "path": ...};
"{run:<job id>}" in a path stands for the number of that job's run in the database asked. An
answer is {"status", "json"} or, for bytes, {"status", "sha256"}."""

from __future__ import annotations

import hashlib
import json
import re
import sys


def answers(requests: list[dict]) -> list[dict]:
    from rest_framework.test import APIClient

    from marketplace.models import User
    from training.models import TrainingRun

    def run_number(match: re.Match) -> str:
        run = TrainingRun.objects.filter(job_id=match[1].removeprefix("0x")).first()
        return str(run.pk if run else 0)

    found = []
    for request in requests:
        client = APIClient()
        if request["as"]:
            client.force_authenticate(User.objects.get(address=request["as"]))
        path = re.sub(r"\{run:(0x[0-9a-f]{64})\}", run_number, request["path"])
        response = client.get(path)
        kind = response.get("Content-Type", "")
        if "json" in kind:
            found.append({"status": response.status_code, "json": json.loads(response.content)})
        else:
            digest = hashlib.sha256(response.content).hexdigest()
            found.append({"status": response.status_code, "sha256": digest})
    return found


def trainable(tag: str) -> dict[int, int]:
    """Listing id -> rows read from IPFS with the data key this database holds, for the listings
    tagged `tag`: the reads a training worker makes."""
    import tempfile
    from pathlib import Path

    from datasets.models import Dataset
    from datasets.selectors import dataset_rows

    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in Dataset.objects.filter(tag_index__contains=f"|{tag}|", status="listed"):
            table = dataset_rows(
                dataset=dataset, workdir=Path(scratch), expected_sha256=dataset.content_sha256
            )
            rows[dataset.listing_id] = table.num_rows
    return rows


if __name__ == "__main__":
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host is allowed, as under pytest
    asked = json.load(sys.stdin)
    json.dump(
        {"answers": answers(asked["requests"]), "trainable": trainable(asked["tag"])}, sys.stdout
    )
