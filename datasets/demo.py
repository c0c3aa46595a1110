"""Demo listings for a fresh development stack: scikit-learn's bundled breast-cancer, wine and
diabetes sets, each split into three shards owned by anvil dev accounts 1-3 (one shard made
noisy), listed through the same pipeline as an upload and signed with those accounts' keys.

The keys are derived from the public test mnemonic, so this runs on the dev chain only.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from eth_account import Account
from web3 import Web3

from datasets import selectors, services
from datasets.models import Dataset
from marketplace.devstack import DEV_MNEMONIC
from marketplace.models import User

DEV_ACCOUNT_NUMBERS = (1, 2, 3)
SHARDS = 3
NOISY = ("breast-cancer", 3)  # (set, shard number) listed with corrupted labels and features


class DemoRefused(Exception):
    pass


@dataclass(frozen=True)
class DemoSet:
    slug: str
    title: str
    description: str
    tags: tuple[str, ...]
    license: str
    price_wei: int


DEMO_SETS = (
    DemoSet(
        "breast-cancer",
        "Breast cancer diagnostics (Wisconsin)",
        "Thirty features computed from digitized images of fine-needle aspirates of breast "
        "masses, with the diagnosis (`malignant` or `benign`). From the UCI Machine Learning "
        "Repository, as bundled with scikit-learn.",
        ("medical", "classification", "tabular"),
        "CC-BY-4.0",
        15 * 10**15,
    ),
    DemoSet(
        "wine",
        "Wine cultivars (chemical analysis)",
        "Results of a chemical analysis of wines grown in the same region of Italy by three "
        "cultivators: 13 constituents per wine and its `cultivar`. From the UCI Machine "
        "Learning Repository, as bundled with scikit-learn.",
        ("food", "classification", "tabular"),
        "CC-BY-4.0",
        8 * 10**15,
    ),
    DemoSet(
        "diabetes",
        "Diabetes progression (baseline variables)",
        "Ten baseline variables (age, sex, body mass index, blood pressure and six blood serum "
        "measurements, mean-centred and scaled) of diabetes patients, with a quantitative "
        "measure of disease `progression` one year later (Efron et al., 2004), as bundled with "
        "scikit-learn.",
        ("medical", "regression", "tabular"),
        "CC-BY-4.0",
        12 * 10**15,
    ),
)


def dev_key(number: int) -> str:
    """The private key of anvil dev account `number` (from the public test mnemonic)."""
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{number}")
    return "0x" + bytes(account.key).hex()


def demo_owner(number: int) -> User:
    from marketplace.services import user_for_address

    return user_for_address(address=Account.from_key(dev_key(number)).address)


def _frame(slug: str):
    from sklearn import datasets as sk

    if slug == "breast-cancer":
        bunch = sk.load_breast_cancer(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "diagnosis"})
        frame["diagnosis"] = frame["diagnosis"].map(dict(enumerate(bunch.target_names)))
    elif slug == "wine":
        bunch = sk.load_wine(as_frame=True)
        frame = bunch.frame.rename(columns={"target": "cultivar"})
        frame["cultivar"] = frame["cultivar"].map(lambda c: f"cultivar_{c + 1}")
    else:
        frame = sk.load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    return frame.sample(frac=1.0, random_state=7).reset_index(drop=True)


def _make_noisy(frame, target: str, rng: np.random.Generator):
    frame = frame.copy()
    features = [c for c in frame.columns if c != target]
    scale = frame[features].std().to_numpy()
    frame[features] = frame[features] + rng.normal(0, 0.5, (len(frame), len(features))) * scale
    flip = rng.random(len(frame)) < 0.35
    labels = frame[target].unique()
    frame.loc[flip, target] = rng.choice(labels, flip.sum())
    return frame


def shards():
    """(DemoSet, shard number, owner account number, CSV bytes, noisy?) for every demo listing."""
    rng = np.random.default_rng(2024)
    for demo in DEMO_SETS:
        frame = _frame(demo.slug)
        target = frame.columns[-1]
        for number, part in enumerate(np.array_split(np.arange(len(frame)), SHARDS), start=1):
            shard = frame.iloc[part]
            noisy = (demo.slug, number) == NOISY
            if noisy:
                shard = _make_noisy(shard, target, rng)
            out = io.StringIO()
            shard.to_csv(out, index=False, float_format="%.6g")
            yield demo, number, DEV_ACCOUNT_NUMBERS[number - 1], out.getvalue().encode(), noisy


def _sign(dataset: Dataset, key: str) -> str:
    typed = selectors.dataset_signing_request(dataset=dataset)
    message = {**typed["message"]}
    for field in ("price", "parentId", "nonce", "deadline"):
        message[field] = int(message[field])
    signed = Account.sign_typed_data(key, full_message={**typed, "message": message})
    return signed.signature.to_0x_hex()


def seed_demo(*, log=print) -> list[Dataset]:
    """List every demo shard (synchronously, with the pipeline's own services)."""
    if settings.CHAIN_ID != settings.DEV_CHAIN_ID:
        raise DemoRefused(
            f"seed_demo signs with the public dev keys: it runs on the dev chain "
            f"{settings.DEV_CHAIN_ID} only, not on chain {settings.CHAIN_ID}."
        )
    listed = []
    with tempfile.TemporaryDirectory() as scratch:
        for demo, number, account, content, noisy in shards():
            owner = demo_owner(account)
            path = Path(scratch) / f"{demo.slug}-part-{number}.csv"
            path.write_bytes(content)
            title = f"{demo.title}, part {number} of {SHARDS}" + (" (noisy)" if noisy else "")
            description = demo.description + (
                "\n\n**Noisy shard:** about a third of its labels were flipped and its features "
                "jittered, so that data valuation has a poor contribution to find."
                if noisy
                else ""
            )
            dataset = services.dataset_create(
                owner=owner,
                upload=path,
                original_filename=path.name,
                title=title,
                description=description,
                license=demo.license,
                price_wei=demo.price_wei // (2 if noisy else 1),
                tags=list(demo.tags) + (["noisy"] if noisy else []),
                enqueue=False,
            )
            services.dataset_process(dataset_id=dataset.pk)
            dataset.refresh_from_db()
            if dataset.status != Dataset.Status.AWAITING_SIGNATURE:
                raise DemoRefused(f"{title}: {dataset.status}: {dataset.status_message}")
            signature = _sign(dataset, dev_key(account))
            services.dataset_signature_submit(
                dataset_id=dataset.pk, user=owner, signature=signature, enqueue=False
            )
            services.dataset_register(dataset_id=dataset.pk)
            dataset.refresh_from_db()
            if dataset.status != Dataset.Status.LISTED:
                raise DemoRefused(f"{title}: {dataset.status}: {dataset.status_message}")
            log(
                f"listed #{dataset.pk} {title} ({dataset.rows} rows) as listing "
                f"{dataset.listing_id}, owner {Web3.to_checksum_address(owner.address)}"
            )
            listed.append(dataset)
    return listed
