"""Nothing that identifies a row leaves a worker. A dataset with e-mail, name, phone and free-text
columns is listed through the real pipeline and trained on by the real worker; then every place a
value could leave by (the database, IPFS, the pages, the API, the worker's INFO log and the model
file the buyer downloads) is scanned for every string cell held by fewer than k rows of the
training file and every value of a flagged column."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from marketplace.ipfs import iter_cat, raw_cid_for_sha256
from tests.training.conftest import list_frame, wait_for_run, wallet_pay
from training.models import TrainingRun
from training.services import training_run_funding_hint

pytestmark = pytest.mark.django_db(transaction=True)

FLAGGED = ["email", "full_name", "phone"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]


def customer_calls(rows: int = 400, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    city = rng.choice(["Lyon", "Porto", "Turku", "Graz", "Ghent"], size=rows).astype(object)
    city[:8] = [
        f"Hamlet-of-{name}" for name in ("Oak", "Elm", "Ash", "Yew", "Fir", "Bay", "Box", "Rue")
    ]
    return pd.DataFrame(
        {
            "email": [f"caller.{i:04d}@mail-{i % 7}.example" for i in range(rows)],
            "full_name": [f"{FIRST[i % 10]} {LAST[(i // 10) % 8]}-{i:03d}" for i in range(rows)],
            "phone": [f"+44 20 7946 {i:04d}" for i in range(rows)],
            "notes": [
                f"Caller {i} asked about tariff {i % 17} on line {rng.integers(10**6)}"
                for i in range(rows)
            ],
            "city": city,
            "plan": rng.choice(["basic", "plus", "family"], size=rows),
            "minutes": np.round(np.abs(rng.normal(300, 80, size=rows)), 2),
            "x": np.round(x, 4),
            "churned": np.where(x + rng.normal(scale=0.6, size=rows) > 0.3, "yes", "no"),
        }
    )


def secrets_of(frame: pd.DataFrame, k: int) -> set[str]:
    """Every string cell held by fewer than k rows, and every value of a flagged column."""
    found: set[str] = set()
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        counts = frame[column].value_counts()
        found |= {str(v) for v, c in counts.items() if c < k}
    for column in FLAGGED:
        found |= set(frame[column].astype(str))
    return found


def pinned(cid: str) -> bytes:
    return b"".join(iter_cat(cid))


def model_file_text(content: bytes) -> str:
    archive = zipfile.ZipFile(io.BytesIO(content))
    return "\n".join(archive.read(name).decode("latin-1") for name in archive.namelist())


def worker_logs(tmp_path_factory) -> str:
    base = tmp_path_factory.getbasetemp()
    return "\n".join(p.read_text(errors="replace") for p in base.glob("worker-host*/worker.log"))


def leaks(places: dict[str, str], secrets: set[str]) -> dict[str, list[str]]:
    found = {}
    for place, text in places.items():
        hits = sorted(s for s in secrets if s in text)
        if hits:
            found[place] = hits[:5] + ([f"... {len(hits)} in all"] if len(hits) > 5 else [])
    return found


@pytest.mark.parametrize("model", ["logistic_regression", "random_forest"])
def test_no_rare_or_flagged_value_leaves_a_worker(
    model, contracts, ipfs_node, celery_worker, buyer, tmp_path, tmp_path_factory
):
    k = settings.PRIVACY_MIN_GROUP_ROWS
    frame = customer_calls()
    secrets = secrets_of(frame, k)
    assert len(secrets) > 4 * len(frame)  # the scan has something to find
    dataset = list_frame(
        frame, account=1, title=f"Customer calls {model}", price_wei=10**16, tmp_path=tmp_path
    )

    buyer_api = APIClient()
    buyer_api.force_authenticate(buyer)
    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [dataset.pk], "target_column": "churned", "model": model, "seed": 3},
        format="json",
    ).json()
    run = TrainingRun.objects.get(pk=body["id"])
    training_run_funding_hint(run=run, tx_hash=wallet_pay(body["escrow"]))
    run = wait_for_run(run.pk, "completed", "failed")
    assert run.status == "completed", run.error

    owner_api, owner_page = APIClient(), Client()
    owner_api.force_authenticate(dataset.owner)
    owner_page.force_login(dataset.owner)
    buyer_page = Client()
    buyer_page.force_login(buyer)
    dataset.refresh_from_db()
    model_response = buyer_api.get(f"/api/training-runs/{run.pk}/model")
    assert model_response.status_code == 200
    dump = io.StringIO()
    call_command("dumpdata", "datasets", "training", "marketplace", "chain", stdout=dump)
    places = {
        "database": dump.getvalue(),
        "ipfs: listing metadata": pinned(dataset.metadata_cid).decode("latin-1"),
        "ipfs: dataset bytes": pinned(dataset.cid).decode("latin-1"),
        "ipfs: report": pinned(raw_cid_for_sha256(run.report_hash[2:])).decode("latin-1"),
        "ipfs: model": pinned(run.model_cid).decode("latin-1"),
        "page: dataset (anyone)": Client().get(f"/datasets/{dataset.pk}/").content.decode(),
        "page: dataset (owner)": owner_page.get(f"/datasets/{dataset.pk}/").content.decode(),
        "page: run (buyer)": buyer_page.get(f"/runs/{run.pk}/").content.decode(),
        "page: earnings (owner)": owner_page.get("/earnings/").content.decode(),
        "api: dataset (anyone)": APIClient().get(f"/api/datasets/{dataset.pk}").content.decode(),
        "api: dataset (owner)": owner_api.get(f"/api/datasets/{dataset.pk}").content.decode(),
        "api: run": buyer_api.get(f"/api/training-runs/{run.pk}").content.decode(),
        "api: report": buyer_api.get(f"/api/training-runs/{run.pk}/report").content.decode(),
        "api: earnings (owner)": owner_api.get("/api/earnings").content.decode(),
        "worker log (INFO)": worker_logs(tmp_path_factory),
        "model file": model_file_text(model_response.content),
    }

    found = leaks(places, secrets)
    assert found == {}, found
    # The run says what the model was not allowed to learn from, and why.
    excluded = {x["column"] for x in run.report["privacy"]["excluded_columns"]}
    assert excluded == {"email", "full_name", "phone", "notes"}
    assert run.report["privacy"]["folded_categories"]["city"] >= 1
    assert "Lyon" in places["model file"]  # the frequent categories are the model's


def test_an_owner_may_opt_a_flagged_column_in_and_the_signed_metadata_says_so(
    contracts, ipfs_node, tmp_path
):
    import json

    from datasets.models import Dataset
    from datasets.services import dataset_create, dataset_process
    from tests.datasets.factories import user_for
    from training.features import ListedColumns, excluded_columns

    frame = customer_calls(rows=120, seed=5)[["plan", "minutes", "x", "churned"]]
    frame["postcode_area"] = [f"area {i % 6}" for i in range(len(frame))]
    path = tmp_path / "calls.csv"
    frame.to_csv(path, index=False)
    dataset = dataset_create(
        owner=user_for(2), upload=path, original_filename="calls.csv", title="Calls by area",
        license="CC-BY-4.0", price_wei=10**15, feature_opt_in=" postcode_area , plan,plan",
        enqueue=False,
    )  # fmt: skip
    dataset_process(dataset_id=dataset.pk)
    dataset = Dataset.objects.get(pk=dataset.pk)

    assert dataset.feature_opt_in == ["postcode_area", "plan"]
    metadata = json.loads(pinned(dataset.metadata_cid))
    assert metadata["feature_opt_in"] == ["postcode_area", "plan"]
    flagged = [w for w in dataset.quality_warnings if w["column"] == "postcode_area"]
    assert flagged and flagged[0]["code"] == "personal_data"
    listing = ListedColumns(
        dataset.title, dataset.quality_warnings, frozenset(dataset.feature_opt_in)
    )
    assert excluded_columns(frame, target="churned", listings=[listing]) == []


def test_a_flagged_column_is_refused_as_a_target_before_payment(
    contracts, ipfs_node, buyer, tmp_path
):
    dataset = list_frame(
        customer_calls(rows=120, seed=8), account=3, title="Calls to predict", price_wei=10**15,
        tmp_path=tmp_path,
    )  # fmt: skip
    api = APIClient()
    api.force_authenticate(buyer)

    response = api.post(
        "/api/training-runs",
        {"dataset_ids": [dataset.pk], "target_column": "email", "model": "random_forest"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["extra"]["code"] == "identifying_target"
    assert "personal data" in response.json()["message"]
    assert not TrainingRun.objects.exists()
