"""What a validator node will do, on the real stack: re-compute a run the worker trained and
settled, from the chain, IPFS, the run's published spec, the datasets' data keys (and a DP run's
secret seed) alone, and get the settled report's bytes exactly."""

import json
from dataclasses import replace

import pytest
from django.conf import settings

from chain.wrappers import DatasetRegistry, TrainingEscrow
from datasets.listed import ContentMismatch
from marketplace.crypto import DecryptionError, unwrap_data_key
from marketplace.ipfs import iter_cat, raw_cid_for_sha256
from tests.training.conftest import BUYER, run_to_completion
from tests.training.test_compute import assert_deterministic_content
from training.compute import ListingFacts, RunSpec, compute, funded_job, read_listing
from training.compute import spec_from_chain as chain_spec
from training.lineage import model_fingerprint_matches
from training.models import TrainingRun
from training.pipeline import dp_seed_context, model_key_context
from training.services import training_run_dp_seed

pytestmark = pytest.mark.django_db(transaction=True)


def data_key(dataset) -> bytes:
    """A listing's data key, as the marketplace hands it to a validator."""
    return unwrap_data_key(
        dataset.wrapped_data_key, settings.MASTER_KEY, context=dataset.key_context
    )


RUNS = {
    "gradient boosting": {"model": "hist_gradient_boosting", "seed": 5},
    "differentially private": {"model": "logistic_regression", "dp_epsilon": 1.0, "seed": 6},
}


@pytest.mark.parametrize("terms", list(RUNS))
def test_a_settled_report_is_recomputed_byte_for_byte_from_the_chain_ipfs_and_the_keys(
    buyer_api, cancer_datasets, celery_worker, tmp_path, terms
):
    run = run_to_completion(buyer_api, cancer_datasets, **RUNS[terms])
    escrow, registry = TrainingEscrow.deployed(), DatasetRegistry.deployed()
    settled = next(
        e
        for e in escrow.job_events(bytes.fromhex(run.job_id), buyer=BUYER)
        if e.name == "JobSettled"
    )
    pinned = b"".join(iter_cat(raw_cid_for_sha256(settled.args["reportHash"][2:])))

    # The validator: the job's terms and listings from the chain and IPFS, the run's options
    # from its published spec, the data keys (and a DP run's seed) handed to it.
    published = RunSpec.from_dict(json.loads(json.dumps(run.spec)))
    job, funding_block = funded_job(escrow, job_id=bytes.fromhex(run.job_id), buyer=BUYER)
    spec = chain_spec(
        escrow, registry, terms=job, funding_block=funding_block, options=published.options()
    )
    keys = {d.listing_id: data_key(d) for d in cancer_datasets}
    workdir = tmp_path / "validator"
    workdir.mkdir()
    tables = [read_listing(facts, keys[facts.listing_id], workdir) for facts in spec.listings]
    dp_seed = None
    if run.dp_epsilon is not None:
        dp_seed = unwrap_data_key(
            run.wrapped_dp_seed, settings.MASTER_KEY, context=dp_seed_context(run.job_id)
        )
    computed = compute(spec, tables, dp_seed=dp_seed)

    assert spec == published  # what the worker computed from is what the chain says
    assert funding_block == run.funding_block
    assert [f.price_wei for f in spec.listings] == [int(d.price_wei) for d in cancer_datasets]
    assert computed.report_bytes == pinned
    assert computed.report_hash == settled.args["reportHash"] == run.report_hash
    assert list(workdir.iterdir()) == []  # no decrypted rows stay behind
    assert_deterministic_content(pinned)
    # The buyer's download is the model the report fingerprints (another save of it).
    model = buyer_api.get(f"/api/training-runs/{run.pk}/model")
    assert model.status_code == 200
    assert model_fingerprint_matches(model.content, json.loads(pinned))
    assert model_fingerprint_matches(computed.model_bytes, json.loads(pinned))
    detail = buyer_api.get(f"/api/training-runs/{run.pk}").json()
    assert detail["model_fingerprint"] == json.loads(pinned)["model_fingerprint"]
    if dp_seed is not None:  # the secret seed is nowhere public
        for public in (pinned, json.dumps(detail).encode(), json.dumps(run.spec).encode()):
            assert dp_seed.hex().encode() not in public and dp_seed not in public


def test_a_listing_whose_bytes_are_not_the_chains_is_refused_and_nothing_stays(
    cancer_datasets, tmp_path
):
    dataset = cancer_datasets[0]
    workdir = tmp_path / "validator"
    workdir.mkdir()
    facts = ListingFacts(
        listing_id=dataset.listing_id, owner=dataset.owner.address,
        price_wei=int(dataset.price_wei), cid=dataset.cid, content_sha256="0" * 64,
        metadata=json.loads(b"".join(iter_cat(dataset.metadata_cid))),
    )  # fmt: skip

    with pytest.raises(ContentMismatch, match="do not match the hash recorded on-chain"):
        read_listing(facts, data_key(dataset), workdir)
    assert list(workdir.iterdir()) == []

    listed = replace(facts, content_sha256=dataset.content_sha256)
    rows = read_listing(listed, data_key(dataset), workdir)
    assert len(rows) == dataset.rows
    assert list(rows.columns) == [c["name"] for c in dataset.columns]
    assert list(workdir.iterdir()) == []


def test_a_dp_runs_secret_seed_is_made_once_and_kept_wrapped_to_the_run(buyer_api, cancer_datasets):
    body = buyer_api.post(
        "/api/training-runs",
        {"dataset_ids": [d.pk for d in cancer_datasets], "target_column": "target",
         "model": "logistic_regression", "dp_epsilon": 1.0},
        format="json",
    ).json()  # fmt: skip

    seed = training_run_dp_seed(run_id=body["id"])
    again = training_run_dp_seed(run_id=body["id"])  # a redelivered task

    run = TrainingRun.objects.get(pk=body["id"])
    assert seed == again and len(seed) == 32
    stored = bytes(run.wrapped_dp_seed)
    assert seed not in stored
    with pytest.raises(DecryptionError):  # bound to this run's seed, not usable as another key
        unwrap_data_key(stored, settings.MASTER_KEY, context=model_key_context(run.job_id))
    assert "wrapped_dp_seed" not in json.dumps(buyer_api.get(f"/api/training-runs/{run.pk}").json())
