"""Test data: CSV files built from seeded random numbers, so every test gets its own rows."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from eth_account import Account

from marketplace.models import User

# anvil's well-known dev accounts 1-3 (test chain only).
DEV_KEYS = {
    1: "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    2: "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    3: "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
}
DEV_ADDRESSES = {n: Account.from_key(key).address for n, key in DEV_KEYS.items()}
STRANGER_KEY = "0x" + "42" * 32


def user_for(account: int) -> User:
    from marketplace.services import user_for_address

    return user_for_address(address=DEV_ADDRESSES[account])


def measurements_csv(seed: int, rows: int = 200) -> bytes:
    """A plausible tabular dataset: numeric features, a category and a label."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    out.write("sepal_length,sepal_width,petal_length,species,label\n")
    species = ["setosa", "versicolor", "virginica"]
    for _ in range(rows):
        kind = int(rng.integers(0, 3))
        out.write(
            f"{rng.normal(5 + kind, 0.4):.3f},{rng.normal(3, 0.3):.3f},"
            f"{rng.normal(1.5 + 2 * kind, 0.5):.3f},{species[kind]},{kind}\n"
        )
    return out.getvalue().encode()


def csv_upload(content: bytes, name: str = "measurements.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def listing_fields(**overrides) -> dict:
    fields = {
        "title": "Flower measurements",
        "description": "Petal and sepal sizes of **three** species.",
        "license": "CC-BY-4.0",
        "price_wei": "20000000000000000",
        "tags": "botany, tabular",
    }
    fields.update(overrides)
    return fields


def listed_dataset(*, owner: User, title: str = "A listed dataset", **fields):
    """A dataset row as the pipeline leaves it once listed (for browsing tests; the pipeline
    itself is tested end to end elsewhere)."""
    from datasets.models import Dataset
    from datasets.selectors import description_excerpt
    from datasets.services import _search_text

    columns = fields.pop("columns", [{"name": "x", "type": "integer"}])
    tags = fields.pop("tags", [])
    defaults = {
        "description": "",
        "license": "CC-BY-4.0",
        "price_wei": 10**16,
        "rows": 100,
        "status": Dataset.Status.LISTED,
        "stage": Dataset.Stage.DONE,
        "original_filename": "data.csv",
    }
    defaults.update(fields)
    return Dataset.objects.create(
        owner=owner,
        title=title,
        excerpt=description_excerpt(defaults["description"]),
        tags=tags,
        columns=columns,
        column_count=len(columns),
        search_text=_search_text(
            title=title, description=defaults["description"], tags=tags, columns=columns
        ),
        tag_index="".join(f"|{t}" for t in tags) + "|",
        **defaults,
    )
