"""What a model may learn from and what it may keep. Columns that identify people or rows are not
features unless their owner opted them in before signing the listing; categories (and classes)
held by fewer than `min_rows` training rows never reach the model, so no rare value is stored in
the file the buyer downloads. No I/O here: the run's pipeline passes the frames and listings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# A text or integer column with at least this share of distinct values tells rows apart (an
# identifier); floats are left alone: continuous measurements are naturally distinct.
IDENTIFIER_DISTINCT_SHARE = 0.9
IDENTIFIER_MIN_ROWS = 20  # fewer rows say nothing about distinctness
# What a rare category becomes: one value that stands for all of them.
OTHER = "(other)"
FLAGGED = {
    "personal_data": "flagged as personal data when it was listed",
    "identifier_column": "flagged as an identifier when it was listed",
}
DISTINCT_REASON = "nearly every value is different (it identifies rows rather than describing them)"


@dataclass(frozen=True)
class ListedColumns:
    """What a dataset's listing says about its columns: its quality warnings and the columns its
    owner opted in as features despite them."""

    title: str
    warnings: list[dict]
    opted_in: frozenset[str]


def listed_columns(dataset) -> ListedColumns:
    """What a dataset's listing says about its columns."""
    return ListedColumns(
        title=dataset.title,
        warnings=dataset.quality_warnings,
        opted_in=frozenset(dataset.feature_opt_in),
    )


def listed_columns_of_metadata(metadata: dict) -> ListedColumns:
    """The same, from the listing's public metadata document (pinned on IPFS, its hash on-chain:
    what its owner signed)."""
    return ListedColumns(
        title=metadata.get("title", ""),
        warnings=metadata.get("quality_warnings") or [],
        opted_in=frozenset(metadata.get("feature_opt_in") or []),
    )


def flagged_columns(listing: ListedColumns) -> dict[str, str]:
    """Column -> why, for the columns the listing flagged and its owner did not opt in."""
    return {
        warning["column"]: f"{FLAGGED[warning['code']]} ({listing.title})"
        for warning in listing.warnings
        if warning.get("code") in FLAGGED and warning.get("column") not in listing.opted_in
    }


def excluded_columns(
    frame: pd.DataFrame, *, target: str, listings: list[ListedColumns]
) -> list[dict]:
    """[{"column", "reason"}] for the columns of `frame` that are not features: flagged by a
    listing that did not opt them in, or text/integer columns whose values are nearly all
    distinct (unless every listing opted them in)."""
    excluded: dict[str, str] = {}
    for listing in listings:
        for column, reason in flagged_columns(listing).items():
            if column in frame.columns and column != target:
                excluded.setdefault(column, reason)
    opted_in_by_all = frozenset.intersection(*(lst.opted_in for lst in listings))
    for column in frame.columns:
        if column == target or column in excluded or column in opted_in_by_all:
            continue
        if _identifies_rows(frame[column]):
            excluded[column] = DISTINCT_REASON
    return [{"column": c, "reason": r} for c, r in excluded.items()]


def _identifies_rows(values: pd.Series) -> bool:
    kind = values.dtype
    if pd.api.types.is_bool_dtype(kind) or pd.api.types.is_float_dtype(kind):
        return False
    if not (pd.api.types.is_integer_dtype(kind) or not pd.api.types.is_numeric_dtype(kind)):
        return False
    present = values.dropna()
    if len(present) < IDENTIFIER_MIN_ROWS:
        return False
    return present.nunique() >= IDENTIFIER_DISTINCT_SHARE * len(present)


def categorical_columns(features: pd.DataFrame) -> list[str]:
    """The columns the pipeline one-hot encodes (what is not numeric)."""
    return [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]


def fold_rare_categories(
    train: pd.DataFrame, test: pd.DataFrame, *, min_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Categories held by fewer than `min_rows` training rows become OTHER in both frames (the
    test rows see only what training kept); returns how many categories each column folded."""
    folded: dict[str, int] = {}
    train, test = train.copy(), test.copy()
    for column in categorical_columns(train):
        counts = train[column].value_counts(dropna=True)
        kept = set(counts.index[counts >= min_rows])
        rare = len(counts) - len(kept)
        if rare:
            folded[column] = rare
        for frame in (train, test):
            values = frame[column].astype(object)
            frame[column] = values.where(values.isna() | values.isin(kept), OTHER)
    return train, test, folded


def drop_rare_classes(
    frame: pd.DataFrame, *, target: str, min_rows: int, test_fraction: float
) -> tuple[pd.DataFrame, int]:
    """Rows of classes too rare to keep at least `min_rows` of them for training are dropped (a
    class label is stored in the model); returns the frame (its index kept) and how many classes
    were dropped."""
    needed = math.ceil(min_rows / (1 - test_fraction))
    counts = frame[target].value_counts()
    rare = counts.index[counts < needed]
    if len(rare) == 0:
        return frame, 0
    kept = frame[~frame[target].isin(rare)]
    if kept[target].nunique() < 2:
        raise ValueError(
            f"after leaving out the classes with fewer than {needed} rows (a model stores its "
            f"classes, and each must stand for at least {min_rows} training rows), fewer than "
            "two classes are left"
        )
    return kept, len(rare)
