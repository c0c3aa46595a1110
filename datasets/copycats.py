"""Copycats earn nothing: an upload whose rows are mostly rows of another owner's listing is
refused when it is listed, naming that listing. The same owner's near-copy, or a new version of
their own listing, is theirs to list.

How rows are matched
--------------------
Each row gets a *signature* that ignores column names and order: the multiset of its values,
each value reduced to a token and the tokens added up modulo 2^64 (a sum does not depend on the
order of its terms), then mixed. Tokens:

- numbers (integers, floats, decimals, booleans as 0/1) fall into buckets on a log scale, one
  bucket `width` wide in ln|v| (sign apart; zero, infinities and NaN have tokens of their own, NaN
  is null). The grid's phase keeps the small whole numbers (1..64 where the width allows) clear
  of bucket boundaries, so integer data never straddles one. `width` grows with the number of
  numeric columns (about one value per row lies within the tolerance of a boundary,
  `AMBIGUOUS_PER_ROW`): a wide row has more values to straddle boundaries and more information
  to spare; a row of two numbers gets buckets 0.4 % wide, one of thirty about 6 %;
- text is NFKC-normalised, lower-cased, its white space collapsed; an empty text is null;
- dates and times are their instant in whole seconds; anything else its text.

A copy may have moved each number by up to `TOLERANCE` (0.1 %, relative: rounding, noise).
A value within that tolerance of a bucket boundary may come from either side, so the *query*
side (the upload being checked) also probes the neighbouring bucket: for the up to
`MAX_PROBED_CELLS` values of a row closest to a boundary, each combination of sides, at most
2^4 = 16 signatures per row. The *stored* side (a listing) keeps each row's one exact signature.

What is stored
--------------
Only keyed hashes: HMAC-SHA-256, under a key derived from `settings.MASTER_KEY`, of the
signature, cut to 64 bits (`RowSignature.key`). Someone reading the database cannot test guesses
of low-entropy rows against them. Which signatures are kept is decided by a second keyed value
(a keyed mix of the signature; its count of trailing zero bits is the signature's *level*,
0 for half of them, 1 for a quarter, ...): a listing keeps the signatures of
level >= L, L the smallest level that leaves at most `STORE_CAP` of them. The rule depends on the
signature only, so the same row is kept (or not) in any file it appears in: a subset of a listing
still matches, and an uploader cannot tell which of its rows are looked at. The listing's L, how
many of its rows it sampled and how many of those repeat a signature within the listing are kept
beside (`RowSignatureSample`).

The check
---------
The upload's probes of level >= its own L (at most `QUERY_CAP` of them) are looked up in one
indexed query, among listings that are LISTED and belong to another owner. For each such listing,
at the level both sides kept (the larger L), the share of the upload's rows that match is

    matched rows (one of its probes is a signature of the listing)
    / rows whose own signature has that level.

Three things keep natural coincidences out:

- only signatures that occur once in the listing are stored, and a probe that several rows of
  the upload share counts for none of them: duplicate rows and frequent rows (a row of zeros,
  the common combinations of small integers) do not count;
- the share is corrected for chance, like Cohen's kappa: another file drawn from the same
  distribution as a listing matches the listing's once-only signatures, by chance, at most about
  as often as the listing's rows repeat a signature within it (`r`, the listing's share of such
  rows: sum p_i * m p_i (1-p_i)^(m-1) <= sum p_i (1 - (1-p_i)^(m-1)) over the distribution's
  cells i, m the listing's rows, up to m / (m-1)); the verdict uses (share - r) / (1 - r). For
  data whose rows carry much information r is about 0; for low-entropy data (a few small-integer
  columns) it is large and no copy is found: such data cannot tell a copy from a coincidence;
- the match must stand for at least `PRIVACY_MIN_GROUP_ROWS` of the upload's rows and
  `MIN_SAMPLED_MATCHES` sampled ones.

An upload is refused when the corrected share reaches `DATASET_COPY_MATCH_FRACTION` (0.5).

When rows enter the index
-------------------------
With the rest of the listing's findings, when it reaches `awaiting_signature` (in the same
transaction as its MinHash bands), and the lookup counts LISTED listings only: an upload that is
not listed yet blocks nobody, and its rows count as soon as it is listed (also when the indexer
finds a listing that had failed after its transaction was sent). A rejected upload never gets
rows (it is rejected before they are written); a failed one keeps them, ignored. The check runs
when an upload is processed: a copy uploaded while its original still waits for its owner's
signature is not refused, and whichever of the two is listed first is the one later copies are
refused against.

Cost and memory
---------------
The signatures are computed in the same reading of the file as its profile, a batch at a time;
what is kept is bounded (STORE_CAP signatures, QUERY_CAP probes), whatever the file's size.
`bench/copycats.py` prints the figures (under 0.1 s added to listing a 200,000-row file).

Limits
------
A copy that drops or derives columns, or moves values by more than the tolerance, is not
recognised; nor are copies of low-entropy rows (above). Padding a copy with rows of one's own
until they are half of it passes, by the rule's definition. A listing of many rows keeps a
sample of its signatures (at level L): a copy of a small part of it (fewer than about
MIN_SAMPLED_MATCHES * 2^L rows) is too little to judge. The refusal tells an uploader that most
of its rows are in the named listing: one who holds some of a listing's rows could test whether
a further row is in it (at least PRIVACY_MIN_GROUP_ROWS matched rows are needed before anything
is said), as the exact-duplicate refusal already tells for whole files. Changing MASTER_KEY
changes every key: the index must then be rebuilt from the listings' files.

`row_keys(frame)` gives the training side the same (unkeyed, unprobed) signature per row of a
DataFrame.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TOLERANCE = 0.001  # relative change of a value a copy may have made (rounding, noise)
# In ln|v|, with room for the rounding of printing a value with 6 significant digits.
TOLERANCE_LOG = -math.log1p(-TOLERANCE) + 1e-5
AMBIGUOUS_PER_ROW = 1.0  # values of a row expected within the tolerance of a bucket boundary
WIDTH_MIN, WIDTH_MAX = 0.004, 0.10  # bucket widths in ln|v| (0.4 % .. 10.5 %)
MAX_PROBED_CELLS = 4  # 2^4 signatures per row at most
STORE_CAP = 4096  # signatures a listing keeps at most
QUERY_CAP = 8192  # probes an upload looks up at most
MIN_SAMPLED_MATCHES = 10
KEY_LABEL = b"data-marketplace/row-signatures/v1"

_U64 = np.uint64
_M1, _M2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
_GOLDEN = _U64(0x9E3779B97F4A7C15)
TOKEN_NULL = _U64(0x6A09E667F3BCC908)
TOKEN_ZERO = _U64(0xBB67AE8584CAA73B)
TOKEN_INF = _U64(0x3C6EF372FE94F82B)
TOKEN_NEG_INF = _U64(0xA54FF53A5F1D36F1)
_TAG_POSITIVE = _U64(0x510E527FADE682D1)
_TAG_NEGATIVE = _U64(0x9B05688C2B3E6C1F)
_TAG_TEXT = _U64(0x1F83D9ABFB41BD6B)
_TAG_TIME = _U64(0x5BE0CD19137E2179)
_TAG_SIGNATURE = _U64(0xCBBB9D5DC1059ED8)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser (a bijection that spreads every input bit over the output)."""
    h = h ^ (h >> _U64(33))
    h = h * _M1
    h ^= h >> _U64(33)
    h = h * _M2
    h ^= h >> _U64(33)
    return h


# --- the grid numbers fall into -------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def grid(numeric_columns: int) -> tuple[float, float]:
    """(width, phase) of the log-scale buckets for rows with this many numeric values: about
    AMBIGUOUS_PER_ROW of a row's values lie within the tolerance of a boundary; the phase keeps
    as many of the whole numbers 1, 2, 3, ... as it can clear of every boundary (by twice the
    tolerance, so a whole number moved by the tolerance is still unambiguous)."""
    width = 2 * TOLERANCE_LOG * max(numeric_columns, 1) / AMBIGUOUS_PER_ROW
    width = min(max(width, WIDTH_MIN), WIDTH_MAX)
    phases = np.arange(4096) / 4096
    clear = 2 * TOLERANCE_LOG / width  # in bucket units
    for top in (64, 32, 16, 8, 4, 2, 1):
        t = np.log(np.arange(1, top + 1))[None, :] / width - phases[:, None]
        margin = 0.5 - np.abs(t - np.rint(t))  # to the nearer boundary, in bucket units
        fine = np.flatnonzero((margin >= clear).all(axis=1))
        if len(fine):
            best = fine[np.argmax(margin[fine].min(axis=1))]
            return width, float(phases[best])
    return width, 0.0


def _number_tokens(values: np.ndarray, width: float, phase: float):
    """Tokens of float64 values (NaN: null), and the ambiguous ones: (positions, distance to
    the boundary in ln|v|, the neighbouring bucket's token minus this one's)."""
    tokens = np.full(len(values), TOKEN_NULL, dtype=np.uint64)
    tokens[values == 0] = TOKEN_ZERO
    tokens[values == np.inf] = TOKEN_INF
    tokens[values == -np.inf] = TOKEN_NEG_INF
    where = np.flatnonzero(np.isfinite(values) & (values != 0))
    if not len(where):
        return tokens, None
    picked = values[where]
    t = np.log(np.abs(picked)) / width - phase
    bucket = np.rint(t)
    offset = t - bucket
    tags = np.where(picked < 0, _TAG_NEGATIVE, _TAG_POSITIVE)
    own = _fmix64((bucket.astype(np.int64).view(np.uint64) * _GOLDEN) ^ tags)
    tokens[where] = own
    distance = (0.5 - np.abs(offset)) * width
    near = np.flatnonzero(distance < TOLERANCE_LOG)
    if not len(near):
        return tokens, None
    neighbour = (bucket[near] + np.sign(offset[near])).astype(np.int64).view(np.uint64)
    other = _fmix64((neighbour * _GOLDEN) ^ tags[near])
    return tokens, (where[near], distance[near], other - own[near])


def _text_tokens(column: pa.Array) -> np.ndarray:
    """Tokens of text, normalised; each distinct value is normalised and hashed once."""
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        encoded = pc.dictionary_encode(column)
        dictionary = encoded.dictionary
        empty = np.zeros(len(dictionary), dtype=bool)
    else:
        encoded = pc.dictionary_encode(column)
        text = encoded.dictionary
        text = pc.utf8_normalize(text, "NFKC")
        text = pc.utf8_lower(text)
        text = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), r"\s+", " ")
        empty = pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
        dictionary = text.cast(pa.large_binary())
    raw = pd.util.hash_array(dictionary.to_numpy(zero_copy_only=False), categorize=False)
    table = _fmix64(raw.astype(np.uint64) ^ _TAG_TEXT)
    table[empty] = TOKEN_NULL
    table = np.append(table, TOKEN_NULL)
    indices = pc.fill_null(encoded.indices, len(dictionary)).to_numpy(zero_copy_only=False)
    return table[indices]


def is_numeric(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_boolean(dtype)
    )


def _column_tokens(column: pa.Array, width: float, phase: float):
    dtype = column.type
    if pa.types.is_dictionary(dtype):
        column, dtype = column.dictionary_decode(), dtype.value_type
    if is_numeric(dtype):
        if pa.types.is_boolean(dtype):
            column = column.cast(pa.uint8())
        values = column.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        return _number_tokens(np.asarray(values, dtype=np.float64), width, phase)
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
    ):
        return _text_tokens(column), None
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        try:
            tz = dtype.tz if pa.types.is_timestamp(dtype) else None
            seconds = column.cast(pa.timestamp("s", tz=tz), safe=False).cast(pa.int64())
            values = seconds.to_numpy(zero_copy_only=False)
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            tokens = np.full(len(column), TOKEN_NULL, dtype=np.uint64)
            picked = np.asarray(values[valid], dtype=np.int64).view(np.uint64)
            tokens[valid] = _fmix64((picked * _GOLDEN) ^ _TAG_TIME)
            return tokens, None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if pa.types.is_null(dtype):
        return np.full(len(column), TOKEN_NULL, dtype=np.uint64), None
    try:
        return _text_tokens(column.cast(pa.string())), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        text = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
        return _text_tokens(text), None


def numeric_columns(schema: pa.Schema) -> int:
    count = 0
    for field_ in schema:
        dtype = field_.type.value_type if pa.types.is_dictionary(field_.type) else field_.type
        count += is_numeric(dtype)
    return count


def _row_sums(columns: Iterable[pa.Array], rows: int, width: float, phase: float):
    """The sum of each row's tokens, and its ambiguous values (row, distance, delta)."""
    sums = np.zeros(rows, dtype=np.uint64)
    ambiguous = []
    for column in columns:
        tokens, near = _column_tokens(column, width, phase)
        sums += tokens
        if near is not None:
            ambiguous.append(near)
    return sums, ambiguous


def _signatures(sums: np.ndarray) -> np.ndarray:
    return _fmix64(sums ^ _TAG_SIGNATURE)


def _probes(sums: np.ndarray, ambiguous: list) -> tuple[np.ndarray, np.ndarray]:
    """(rows, sums) of the rows' other probes: for each row, every combination of sides of its
    MAX_PROBED_CELLS values closest to a boundary, but the one of no change."""
    if not ambiguous:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
    rows = np.concatenate([a[0] for a in ambiguous])
    distance = np.concatenate([a[1] for a in ambiguous])
    delta = np.concatenate([a[2] for a in ambiguous])
    order = np.lexsort((distance, rows))
    rows, delta = rows[order], delta[order]
    first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    sizes = np.diff(np.r_[first, len(rows)])
    rank = np.arange(len(rows)) - np.repeat(first, sizes)
    keep = rank < MAX_PROBED_CELLS
    owners = rows[first]
    position = np.repeat(np.arange(len(first)), sizes)[keep]
    deltas = np.zeros((len(first), MAX_PROBED_CELLS), dtype=np.uint64)
    deltas[position, rank[keep]] = delta[keep]
    probed = np.minimum(sizes, MAX_PROBED_CELLS)
    out_rows, out_sums = [], []
    for combination in range(1, 1 << MAX_PROBED_CELLS):
        valid = np.flatnonzero(combination < (1 << probed))
        if not len(valid):
            continue
        total = sums[owners[valid]].copy()
        for cell in range(MAX_PROBED_CELLS):
            if combination >> cell & 1:
                total += deltas[valid, cell]
        out_rows.append(owners[valid])
        out_sums.append(total)
    return np.concatenate(out_rows), np.concatenate(out_sums)


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """One uint64 key per row of `frame` (in its order), equal for two rows that hold the same
    values whatever the columns' names and order, numbers compared to within about 0.1 %
    (the listing check's signature, without its probing and without a key: best effort, two
    values that straddle a bucket boundary give different keys). Null, NaN and empty text are
    one value. Keys of two frames compare when their rows have the same number of numeric
    values (as rows that are "the same" do). For in-run use; never store them (they are not
    keyed: low-entropy rows could be guessed back from them)."""
    arrays = []
    for name in frame.columns:
        series = frame[name]
        try:
            array = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            array = pa.array(series.map(lambda v: None if pd.isna(v) else str(v)))
        if isinstance(array, pa.ChunkedArray):  # Arrow-backed text of several frames combined
            array = array.combine_chunks()
        arrays.append(array)
    width, phase = grid(sum(is_numeric(a.type) for a in arrays))
    sums, _ = _row_sums(arrays, len(frame), width, phase)
    return _signatures(sums)


# --- keys -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureKey:
    """Derived from the master key: `sample` picks signatures (their level), `store` hashes
    them for the index."""

    sample: tuple[np.uint64, np.uint64]
    store: bytes

    @classmethod
    def derive(cls, master_key: bytes) -> SignatureKey:
        base = hmac.new(master_key, KEY_LABEL, hashlib.sha256).digest()
        sample = hmac.new(base, b"sample", hashlib.sha256).digest()
        first, second = np.frombuffer(sample[:16], dtype=np.uint64)
        return cls((first, second), hmac.new(base, b"store", hashlib.sha256).digest())

    def levels(self, signatures: np.ndarray) -> np.ndarray:
        """Trailing zero bits of a keyed hash of each signature (0 for half of them, 1 for a
        quarter, ...): a signature of level >= L is kept by a file sampling at L."""
        h = _fmix64(_fmix64(signatures ^ self.sample[0]) ^ self.sample[1])
        lowest = h & (~h + _U64(1))
        levels = np.full(len(h), 64, dtype=np.int64)
        nonzero = lowest != 0
        levels[nonzero] = np.log2(lowest[nonzero].astype(np.float64)).astype(np.int64)
        return levels

    def hashes(self, signatures: np.ndarray) -> np.ndarray:
        """The index's keys: HMAC-SHA-256 of each signature, cut to a signed 64-bit integer."""
        raw = np.asarray(signatures, dtype=">u8").tobytes()
        out = np.empty(len(signatures), dtype=np.int64)
        for i in range(len(signatures)):
            digest = hmac.new(self.store, raw[8 * i : 8 * i + 8], hashlib.sha256).digest()
            out[i] = int.from_bytes(digest[:8], "big", signed=True)
        return out


def signature_key() -> SignatureKey:
    from django.conf import settings

    return _derived(settings.MASTER_KEY)


@functools.lru_cache(maxsize=4)
def _derived(master_key: bytes) -> SignatureKey:
    return SignatureKey.derive(master_key)


# --- one pass over a file's rows ------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureSample:
    """What a file's rows leave for the copy check. Query side (this file checked against the
    listings): probes of level >= `query_level`. Stored side (this file as a listing): distinct
    exact signatures of level >= `store_level` and how many rows have each."""

    rows: int
    rows_by_level: np.ndarray  # rows whose own signature has level i, i = 0..64
    query_level: int
    query_rows: np.ndarray  # int64: the row of each probe
    query_signatures: np.ndarray  # uint64
    query_levels: np.ndarray  # int64
    store_level: int
    store_signatures: np.ndarray  # uint64, distinct
    store_counts: np.ndarray  # int64: rows with each signature
    probes_per_row: float

    @property
    def sampled_rows(self) -> int:
        return int(self.store_counts.sum())

    @property
    def repeated_rows(self) -> int:
        return int(self.store_counts[self.store_counts > 1].sum())

    @property
    def repeat_share(self) -> float:
        return self.repeated_rows / self.sampled_rows if self.sampled_rows else 0.0

    def unique_signatures(self) -> np.ndarray:
        return self.store_signatures[self.store_counts == 1]


class RowSignatures:
    """Fed the decoded batches of one reading of a file (`add`), in bounded memory: at most
    STORE_CAP distinct signatures and QUERY_CAP probes are kept, by raising the sampling level
    as more arrive."""

    def __init__(self, schema: pa.Schema, key: SignatureKey):
        self.key = key
        self.width, self.phase = grid(numeric_columns(schema))
        self.rows = 0
        self.probes = 0
        self.rows_by_level = np.zeros(65, dtype=np.int64)
        self.query_level = 0
        self._query = (np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.int64))
        self.store_level = 0
        self._store = (np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64))

    def add(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if n == 0:
            return
        sums, ambiguous = _row_sums(batch.columns, n, self.width, self.phase)
        own = _signatures(sums)
        own_levels = self.key.levels(own)
        self.rows_by_level += np.bincount(own_levels, minlength=65)
        self._store_add(own, own_levels)
        extra_rows, extra_sums = _probes(sums, ambiguous)
        extra = _signatures(extra_sums)
        rows = np.concatenate([np.arange(n, dtype=np.int64), extra_rows]) + self.rows
        signatures = np.concatenate([own, extra])
        levels = np.concatenate([own_levels, self.key.levels(extra)])
        self.probes += len(signatures)
        self._query_add(rows, signatures, levels)
        self.rows += n

    def _query_add(self, rows, signatures, levels) -> None:
        take = levels >= self.query_level
        kept = self._query
        rows, signatures, levels = (
            np.concatenate([kept[0], rows[take]]),
            np.concatenate([kept[1], signatures[take]]),
            np.concatenate([kept[2], levels[take]]),
        )
        while len(rows) > QUERY_CAP:
            self.query_level += 1
            take = levels >= self.query_level
            rows, signatures, levels = rows[take], signatures[take], levels[take]
        self._query = (rows, signatures, levels)

    def _store_add(self, signatures, levels) -> None:
        take = levels >= self.store_level
        kept_signatures, kept_counts, kept_levels = self._store
        merged = np.concatenate([kept_signatures, signatures[take]])
        counts = np.concatenate([kept_counts, np.ones(int(take.sum()), dtype=np.int64)])
        all_levels = np.concatenate([kept_levels, levels[take]])
        distinct, first, inverse = np.unique(merged, return_index=True, return_inverse=True)
        counts = np.bincount(inverse, weights=counts, minlength=len(distinct)).astype(np.int64)
        levels = all_levels[first]
        while len(distinct) > STORE_CAP:
            self.store_level += 1
            take = levels >= self.store_level
            distinct, counts, levels = distinct[take], counts[take], levels[take]
        self._store = (distinct, counts, levels)

    def result(self) -> SignatureSample:
        rows, signatures, levels = self._query
        return SignatureSample(
            rows=self.rows,
            rows_by_level=self.rows_by_level.copy(),
            query_level=self.query_level,
            query_rows=rows,
            query_signatures=signatures,
            query_levels=levels,
            store_level=self.store_level,
            store_signatures=self._store[0],
            store_counts=self._store[1],
            probes_per_row=self.probes / max(self.rows, 1),
        )


# --- judging an upload against one listing --------------------------------------------------------


@dataclass(frozen=True)
class IndexedListing:
    """What the index holds of a listing: its sampling level, rows sampled and repeated, and
    (of its keys) those the upload's probes hit."""

    level: int
    sampled_rows: int
    repeated_rows: int
    keys: np.ndarray  # int64

    @property
    def repeat_share(self) -> float:
        return self.repeated_rows / self.sampled_rows if self.sampled_rows else 0.0


def indexed(sample: SignatureSample, key: SignatureKey) -> IndexedListing:
    """A file as the index would hold it once listed (all its keys)."""
    return IndexedListing(
        level=sample.store_level,
        sampled_rows=sample.sampled_rows,
        repeated_rows=sample.repeated_rows,
        keys=key.hashes(sample.unique_signatures()),
    )


@dataclass(frozen=True)
class Verdict:
    share: float  # of the upload's rows that are rows of the listing
    corrected: float  # the share beyond chance: (share - r) / (1 - r)
    matched: int  # sampled rows that matched
    rows: int  # the upload's rows the share stands for, estimated
    copy: bool


def judge(
    sample: SignatureSample,
    query_keys: np.ndarray,
    listing: IndexedListing,
    *,
    threshold: float,
    min_rows: int,
) -> Verdict:
    """Whether the upload (`sample`, `query_keys` its probes' index keys) is mostly a copy of
    `listing`."""
    level = max(listing.level, sample.query_level)
    take = sample.query_levels >= level
    rows, signatures = sample.query_rows[take], sample.query_signatures[take]
    keys = query_keys[take]
    # One (row, signature) pair once; a signature several rows share counts for none of them.
    pairs = np.unique(np.stack([signatures, rows.view(np.uint64)], axis=1), axis=0)
    per_signature = np.unique(pairs[:, 0], return_counts=True)
    shared = per_signature[0][per_signature[1] > 1]
    hit = np.isin(keys, listing.keys) & ~np.isin(signatures, shared)
    matched = len(np.unique(rows[hit]))
    counted = int(sample.rows_by_level[level:].sum())
    share = min(matched / counted, 1.0) if counted else 0.0
    chance = listing.repeat_share
    corrected = max((share - chance) / (1 - chance), 0.0) if chance < 1 else 0.0
    estimated = int(round(share * sample.rows))
    copy = corrected >= threshold and estimated >= min_rows and matched >= MIN_SAMPLED_MATCHES
    return Verdict(share, corrected, matched, estimated, copy)


# --- the pipeline's use: look up, judge, index ----------------------------------------------------


def copied_listing(*, dataset, sample: SignatureSample):
    """(the other owner's listing, its verdict) the upload is mostly a copy of, or None: one
    indexed lookup of the upload's probe keys among LISTED listings of other owners."""
    from django.conf import settings

    from datasets.models import Dataset, RowSignature, RowSignatureSample

    if sample is None or not len(sample.query_signatures):
        return None
    key = signature_key()
    query_keys = key.hashes(sample.query_signatures)
    found: dict[int, list[int]] = {}
    hits = (
        RowSignature.objects.filter(key__in=np.unique(query_keys).tolist())
        .filter(dataset__status=Dataset.Status.LISTED)
        .exclude(dataset__owner_id=dataset.owner_id)
        .exclude(dataset_id=dataset.pk)
        .values_list("dataset_id", "key")
    )
    for dataset_id, hit in hits:
        found.setdefault(dataset_id, []).append(hit)
    if not found:
        return None
    summaries = RowSignatureSample.objects.filter(dataset_id__in=list(found)).in_bulk()
    best = None
    for dataset_id, keys in found.items():
        summary = summaries.get(dataset_id)
        if summary is None:
            continue
        listing = IndexedListing(
            level=summary.level,
            sampled_rows=summary.sampled_rows,
            repeated_rows=summary.repeated_rows,
            keys=np.array(keys, dtype=np.int64),
        )
        verdict = judge(
            sample,
            query_keys,
            listing,
            threshold=settings.DATASET_COPY_MATCH_FRACTION,
            min_rows=settings.PRIVACY_MIN_GROUP_ROWS,
        )
        if verdict.copy and (best is None or verdict.share > best[1].share):
            best = (dataset_id, verdict)
    if best is None:
        return None
    other = Dataset.objects.only("pk", "title").get(pk=best[0])
    return other, best[1]


def copy_reason(other, verdict: Verdict) -> str:
    percent = int(verdict.share * 100)
    if percent >= 100:
        lead = "All of these rows are"
    elif percent > 50:
        lead = f"Most of these rows ({percent} %) are"
    else:
        lead = f"{percent} % of these rows are"
    return (
        f"{lead} rows of “{other.title}” (dataset #{other.pk}), listed by another owner; a copy "
        "of someone else's data cannot be listed."
    )


def index_rows(dataset_id: int, sample: SignatureSample) -> tuple[object, list]:
    """The listing's RowSignatureSample and RowSignature rows, to be saved with its findings."""
    from datasets.models import RowSignature, RowSignatureSample

    summary = RowSignatureSample(
        dataset_id=dataset_id,
        level=sample.store_level,
        sampled_rows=sample.sampled_rows,
        repeated_rows=sample.repeated_rows,
    )
    keys = signature_key().hashes(sample.unique_signatures())
    return summary, [RowSignature(dataset_id=dataset_id, key=int(k)) for k in keys]
