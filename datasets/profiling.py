"""Validate and describe an uploaded CSV or Parquet file, streaming it in batches so memory stays
bounded: row count, column schema, per-column statistics, and the quality findings that need only
the file itself (duplicate rows, constant, identifier-like and personal-looking columns, formula
cells). Findings that need other listings (duplicates of them) are made by the services.

Anything that makes the file unusable raises `InputRejected` with a reason a person can act on.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash

from datasets import copycats, reader
from datasets.reader import FORMULA_PREFIXES, NUMBER_PATTERN, InputRejected, inert

READ_CHUNK = 1024 * 1024
# Arrow reads some 36 blocks ahead: the block size bounds the parser's memory. A block holds at
# least two of the longest lines allowed, so a row never straddles blocks.
# jemalloc hands the CSV reader's buffers back sooner than Arrow's default allocator: the peak
# memory of listing a 100 MB file drops by about 50 MB (bench/ingest.py).
try:
    pa.set_memory_pool(pa.jemalloc_memory_pool())
except NotImplementedError:  # a pyarrow built without jemalloc keeps its default
    pass

SAMPLE_ROWS = 5_000  # uniform row sample: histograms, value-pattern checks
TOP_VALUES = 10
EXACT_COUNT_LIMIT = 10_000  # distinct values counted exactly per column up to this many
ROW_HASH_LIMIT = 8_000_000  # row hashes kept for exact duplicate counting (8 bytes each)
HISTOGRAM_BINS = 12
MINHASH_PERMUTATIONS = 128
MINHASH_SEED = 20240607
HLL_PRECISION = 12
DISPLAY_CHARS = 80
FORMULA_LEADS = pa.array(FORMULA_PREFIXES)

# Both ways of writing a name: "first_name", "FirstName", "first name".
_SPLIT = re.compile(r"[^a-z0-9]+")
ID_NAMES = {"id", "uuid", "guid", "key", "index", "rownum", "row_number", "record_id", "pk"}
PERSONAL_NAMES = {
    "email": "an e-mail address", "e_mail": "an e-mail address", "mail": "an e-mail address",
    "phone": "a phone number", "telephone": "a phone number", "mobile": "a phone number",
    "ssn": "a social security number", "social_security": "a social security number",
    "passport": "a passport number", "iban": "a bank account", "credit_card": "a card number",
    "card_number": "a card number", "first_name": "a name", "last_name": "a name",
    "surname": "a name", "full_name": "a name", "name": "a name", "address": "an address",
    "street": "an address", "postcode": "a postcode", "zip": "a postcode", "zipcode": "a postcode",
    "birth": "a date of birth", "dob": "a date of birth", "date_of_birth": "a date of birth",
    "birthdate": "a date of birth", "ip": "an IP address", "ip_address": "an IP address",
    "age": "an age (a quasi-identifier)", "sex": "a sex (a quasi-identifier)",
    "gender": "a gender (a quasi-identifier)",
}  # fmt: skip
VALUE_PATTERNS = {
    "e-mail addresses": re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE),
    "phone numbers": re.compile(r"^\+?\d[\d\s().-]{7,}\d$"),
    "IP addresses": re.compile(r"^(\d{1,3}\.){3}\d{1,3}$"),
    "IBANs": re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$"),
}
UUID_PATTERN = re.compile(
    r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I
)
CARD_PATTERN = re.compile(r"^\d[\d -]{11,22}\d$")


@dataclass(frozen=True)
class Limits:
    max_columns: int
    max_line_bytes: int
    max_decoded_bytes: int  # a Parquet file's data, decoded
    max_decode_ratio: int  # ... and as a multiple of its size on disk
    # Published statistics are aggregates over at least this many rows (PRIVACY_MIN_GROUP_ROWS).
    min_group_rows: int = 20

    def decode_bound(self, path: Path) -> reader.DecodeBound:
        return reader.DecodeBound(
            self.max_decoded_bytes, self.max_decode_ratio, path.stat().st_size
        )


@dataclass
class Profile:
    file_format: reader.FileFormat  # how the rows were read: the training worker reads them so
    rows: int
    columns: list[dict]
    warnings: list[dict]
    file_sha256: str
    rows_sha256: str  # the set of distinct rows and the header: same data, reordered or not
    unique_rows: int
    minhash: bytes  # MINHASH_PERMUTATIONS uint64 values over the distinct rows
    # The rows' signatures for the copy check (datasets.copycats), when a key was given.
    row_signatures: copycats.SignatureSample | None = None


def _display(value) -> str | int | float | bool | None:
    """A JSON-safe, inert, shortened form of a cell value for the column statistics."""
    if value is None:
        return None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value[: DISPLAY_CHARS // 2].hex()
    text = inert(str(value))
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 1] + "…"


def minhash_from_bytes(raw: bytes) -> MinHash:
    values = np.frombuffer(raw, dtype=np.uint64)
    return MinHash(seed=MINHASH_SEED, hashvalues=values, scheme="affine64")


_FMIX64 = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
MINHASH_BLOCK = 4096  # values per block


def minhash_update(minhash: MinHash, values: np.ndarray) -> None:
    """`minhash.update_batch(values)` for 64-bit hashes (scheme "affine64", identity hashfunc),
    the same hash values, without turning each value into a Python int: the murmur3 finalizer,
    then each permutation a * h + b (mod 2^64), the minimum per permutation. The products go to
    one reused buffer (fresh multi-megabyte temporaries cost a page fault per page each time)."""
    shift, first, second = _FMIX64
    a, b = (np.asarray(p, dtype=np.uint64) for p in minhash.permutations)
    products = np.empty((min(MINHASH_BLOCK, len(values)), len(a)), dtype=np.uint64)
    lowest = minhash.hashvalues.astype(np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, len(values), MINHASH_BLOCK):
            h = np.asarray(values[start : start + MINHASH_BLOCK], dtype=np.uint64)
            h = (h ^ (h >> shift)) * first
            h = (h ^ (h >> shift)) * second
            h ^= h >> shift
            block = products[: len(h)]
            np.multiply(h[:, None], a, out=block)
            block += b
            np.minimum(lowest, block.min(axis=0), out=lowest)
    minhash.hashvalues = lowest


def minhash_band_keys(raw: bytes, bands: int = 64) -> list[int]:
    """Locality-sensitive keys: listings sharing a key are candidates for near-duplicates."""
    values = np.frombuffer(raw, dtype=np.uint64)
    rows = len(values) // bands
    keys = []
    for band in range(bands):
        chunk = values[band * rows : (band + 1) * rows].tobytes()
        digest = hashlib.blake2b(chunk, digest_size=8).digest()
        keys.append(int.from_bytes(digest, "big", signed=True))
    return keys


# --- pass 1: the raw bytes ------------------------------------------------------------------


def _is_parquet(path: Path, size: int) -> bool:
    if size < 12:
        return False
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(-4, 2)
        tail = handle.read(4)
    return head == b"PAR1" and tail == b"PAR1"


@dataclass
class _RawFacts:
    sha256: str
    lines: int
    file_format: reader.FileFormat


def _check_text(path: Path, limits: Limits, on_progress: Callable[[float], None]) -> _RawFacts:
    """Hash the bytes and check they are CSV text: UTF-8, no NUL bytes, lines within the limit,
    quotes balanced (an odd count means the file ends inside a quoted value)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    consumed = lines = quotes = 0
    line_length = 0  # bytes since the last newline
    first_line = b""
    size = path.stat().st_size
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
            nul = chunk.find(b"\0")
            if nul >= 0:
                raise InputRejected(
                    f"The file holds binary data (a NUL byte at byte {consumed + nul}): it is "
                    "neither CSV text nor a Parquet file.",
                    "binary",
                )
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                offset = consumed - pending + exc.start
                line = lines + chunk[: max(exc.start - pending, 0)].count(b"\n") + 1
                raise InputRejected(
                    f"The file is not UTF-8 text: byte {offset} (line {line}) is not valid UTF-8. "
                    "Save it as CSV UTF-8 and upload it again.",
                    "not_utf8",
                ) from None
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            if len(newlines):
                longest = max(
                    line_length + int(newlines[0]),
                    int(np.diff(newlines).max()) - 1 if len(newlines) > 1 else 0,
                )
                line_length = len(chunk) - int(newlines[-1]) - 1
            else:
                longest = line_length = line_length + len(chunk)
            if longest > limits.max_line_bytes:
                raise InputRejected(
                    f"A line of the file is longer than {limits.max_line_bytes:,} bytes (near line "
                    f"{lines + 1:,}). Rows that long are not tabular data.",
                    "line_too_long",
                )
            if not first_line:
                first_line = chunk[: int(newlines[0])] if len(newlines) else chunk[:65536]
            lines += len(newlines)
            quotes += chunk.count(b'"')
            consumed += len(chunk)
            on_progress(consumed / max(size, 1))
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputRejected(
                "The file is not UTF-8 text: it ends in the middle of a character (truncated?).",
                "not_utf8",
            ) from None
    if quotes % 2:
        raise InputRejected(
            "The file ends inside a quoted value (its quotes do not pair up): it looks truncated.",
            "unbalanced_quotes",
        )
    return _RawFacts(
        digest.hexdigest(), lines + (1 if line_length else 0), reader.text_format(first_line)
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- pass 2: the rows -----------------------------------------------------------------------


def _type_label(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "float"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_time(dtype):
        return "time"
    if pa.types.is_duration(dtype):
        return "duration"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "binary"
    if pa.types.is_null(dtype):
        return "empty"
    return "other"


def _check_schema(schema: pa.Schema, limits: Limits) -> None:
    names = schema.names
    if len(names) > limits.max_columns:
        raise InputRejected(
            f"The file has {len(names):,} columns; at most {limits.max_columns:,} can be listed.",
            "too_many_columns",
        )
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise InputRejected(
                f"Column {position} has no name: give every column a name in the header.",
                "unnamed_column",
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputRejected(
                f"The header names the column {name!r} twice: column names must be unique.",
                "duplicate_column_name",
            )
        seen.add(name)
    for field_ in schema:
        dtype = field_.type
        if pa.types.is_dictionary(dtype):
            dtype = dtype.value_type
        if pa.types.is_nested(dtype):
            raise InputRejected(
                f"Column {field_.name!r} holds nested values ({dtype}); only flat tables, one "
                "value per cell, can be listed.",
                "nested_column",
            )


class _HyperLogLog:
    """Approximate distinct counts from 64-bit hashes, vectorised (for columns with too many
    distinct values to count exactly)."""

    def __init__(self, precision: int = HLL_PRECISION):
        self.p = precision
        self.registers = np.zeros(1 << precision, dtype=np.uint8)

    def add(self, hashes: np.ndarray) -> None:
        index = (hashes >> np.uint64(64 - self.p)).astype(np.int64)
        rest = (hashes << np.uint64(self.p)) | np.uint64((1 << self.p) - 1)
        # Leading zeros of `rest` + 1, via the float exponent (exact for this use).
        rank = (64 - np.floor(np.log2(rest.astype(np.float64))).astype(np.int64)).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def error_bound(self, estimate: int) -> int:
        """Three standard errors of an estimate (1.04 / sqrt(registers) each): the true count
        lies within it but for about one file in 370."""
        return math.ceil(3 * 1.04 / math.sqrt(len(self.registers)) * estimate)

    def count(self) -> int:
        m = len(self.registers)
        alpha = 0.7213 / (1 + 1.079 / m)
        estimate = alpha * m * m / float(np.sum(np.power(2.0, -self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return int(round(estimate))


@dataclass
class _ColumnStats:
    name: str
    dtype: pa.DataType
    label: str
    nulls: int = 0
    count: int = 0
    counts: Counter | None = field(default_factory=Counter)
    hll: _HyperLogLog = field(default_factory=_HyperLogLog)
    minimum: object = None
    maximum: object = None
    total: float = 0.0
    total_squares: float = 0.0
    min_length: int | None = None
    max_length: int | None = None
    formula_cells: int = 0
    distinct_share: float = 0.0  # distinct values per cell in the last tallied batch

    @property
    def wants_tally(self) -> bool:
        """Whether the distinct values of a batch are worth finding first: while they are being
        counted exactly, or while they repeat (a column of mostly distinct values is hashed
        cell by cell, the same hashes without the dictionary)."""
        return self.counts is not None or self.distinct_share < 0.5

    def add(self, column: pa.Array, hashes: np.ndarray, tally=None) -> None:
        """`hashes`: one per cell. `tally`: (distinct values, their hashes, their counts) when
        the caller has them already."""
        valid = column.drop_null() if column.null_count else column
        self.nulls += column.null_count
        self.count += len(valid)
        if len(valid) == 0:
            return
        if tally is not None:  # the distinct values are enough (and usually far fewer)
            self.hll.add(tally[1])
            self.distinct_share = len(tally[1]) / len(column)
        elif column.null_count:
            self.hll.add(hashes[column.is_valid().to_numpy(zero_copy_only=False)])
        else:
            self.hll.add(hashes)
        if self.counts is not None:
            if tally is None:
                value_counts = pc.value_counts(valid)
                values, tallies = value_counts.field("values"), value_counts.field("counts")
            else:
                values, _, tallies = tally
            if len(values) > EXACT_COUNT_LIMIT:
                self.counts = None
            else:
                tallies = tallies.to_pylist() if isinstance(tallies, pa.Array) else tallies.tolist()
                self.counts.update(dict(zip(values.to_pylist(), tallies, strict=True)))
                if len(self.counts) > EXACT_COUNT_LIMIT:
                    self.counts = None
        if self.label in {"integer", "float", "timestamp", "date", "time", "duration"}:
            self._add_numbers(valid)
        elif self.label == "string":
            # On the distinct values when the caller has them, weighted by their counts.
            values, weights = (tally[0], tally[2]) if tally is not None else (valid, None)
            self._add_text(values, weights)

    def _add_numbers(self, valid: pa.Array) -> None:
        if pa.types.is_floating(valid.type) or pa.types.is_integer(valid.type):
            raw = valid.to_numpy()  # no nulls left: numpy reads Arrow's buffer in place
            low, high = raw.min(), raw.max()
            if self.label == "integer" or (np.isfinite(low) and np.isfinite(high)):
                numbers = raw.astype(np.float64, copy=False)  # floats: no NaN, no infinity
                self.total += float(numbers.sum())
                # Not np.dot: BLAS threads would spin on the cores the IPFS node works on.
                self.total_squares += float(np.square(numbers).sum())
                self._widen_range(low.item(), high.item())
                return
        low, high = pc.min_max(valid).values()
        low, high = low.as_py(), high.as_py()
        if self.label == "float":
            numbers = pc.cast(valid, pa.float64())
            finite = pc.filter(numbers, pc.is_finite(numbers))
            if len(finite):
                low_f, high_f = pc.min_max(finite).values()
                low, high = low_f.as_py(), high_f.as_py()
                self.total += pc.sum(finite).as_py()
                self.total_squares += pc.sum(pc.multiply(finite, finite)).as_py()
            else:
                low = high = None
        elif self.label == "integer":
            numbers = pc.cast(valid, pa.float64())
            self.total += pc.sum(numbers).as_py()
            self.total_squares += pc.sum(pc.multiply(numbers, numbers)).as_py()
        self._widen_range(low, high)

    def _widen_range(self, low, high) -> None:
        if low is not None:
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)

    def _add_text(self, values: pa.Array, weights: np.ndarray | None) -> None:
        lengths = pc.min_max(pc.utf8_length(values))
        low, high = lengths["min"].as_py(), lengths["max"].as_py()
        self.min_length = low if self.min_length is None else min(self.min_length, low)
        self.max_length = high if self.max_length is None else max(self.max_length, high)
        # The regular expression runs only where a value starts like a formula (rare).
        leading = pc.is_in(pc.utf8_slice_codeunits(values, 0, 1), value_set=FORMULA_LEADS)
        if not pc.any(leading).as_py():
            return
        formulas = pc.and_(
            leading, pc.invert(pc.match_substring_regex(values, NUMBER_PATTERN.pattern))
        )
        flags = formulas.to_numpy(zero_copy_only=False)
        found = int(flags.sum() if weights is None else np.asarray(weights)[flags].sum())
        self.formula_cells += found


NULL_HASH = np.uint64(0x5BD1E9955BD1E995)


def _is_text(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
    )


def _text_hashes(values: pa.Array) -> np.ndarray:
    """pandas' hash of each value, handed over as bytes: pandas hashes a str by its UTF-8
    bytes, so the hashes are the same, without decoding every value into a Python str."""
    if pa.types.is_string(values.type):
        values = values.cast(pa.binary())
    elif pa.types.is_large_string(values.type):
        values = values.cast(pa.large_binary())
    return pd.util.hash_array(values.to_numpy(zero_copy_only=False), categorize=False)


def _column_hashes(column: pa.Array, *, tally: bool = True) -> tuple[np.ndarray, tuple | None]:
    """A 64-bit hash per cell (nulls: NULL_HASH). With `tally`, text is dictionary-encoded first,
    so each distinct value is hashed once, and the distinct values come back with their hashes
    and counts; without it (a column of mostly distinct values) the cells are hashed as they are
    (the same hashes)."""
    if not _is_text(column.type):
        return pd.util.hash_array(column.to_numpy(zero_copy_only=False), categorize=False), None
    if not tally:
        hashes = _text_hashes(column)
        if column.null_count:
            hashes[~column.is_valid().to_numpy(zero_copy_only=False)] = NULL_HASH
        return hashes, None
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.dictionary
    table = np.append(_text_hashes(dictionary), NULL_HASH)
    indices = pc.fill_null(encoded.indices, len(dictionary)).to_numpy(zero_copy_only=False)
    counts = np.bincount(indices, minlength=len(dictionary) + 1)[: len(dictionary)]
    return table[indices], (dictionary, table[:-1], counts)


def _combine_row_hashes(column_hashes: list[np.ndarray], rows: int) -> np.ndarray:
    combined = np.full(rows, 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for hashes in column_hashes:
            combined = (combined ^ hashes) * np.uint64(0xBF58476D1CE4E5B9)
            combined ^= combined >> np.uint64(31)
    return combined


class _RowSample:
    """A uniform sample of rows (bottom-k of random keys), kept as one small Arrow table."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.table: pa.Table | None = None
        self.keys = np.empty(0)

    def add(self, batch: pa.RecordBatch) -> None:
        keys = self.rng.random(batch.num_rows)
        if batch.num_rows > self.size:
            keep = np.argpartition(keys, self.size)[: self.size]
            batch, keys = batch.take(pa.array(keep)), keys[keep]
        table = pa.Table.from_batches([batch])
        merged = table if self.table is None else pa.concat_tables([self.table, table])
        merged_keys = np.concatenate([self.keys, keys])
        if merged.num_rows > self.size:
            keep = np.argpartition(merged_keys, self.size)[: self.size]
            merged, merged_keys = merged.take(pa.array(keep)), merged_keys[keep]
        self.table, self.keys = merged.combine_chunks(), merged_keys


# --- the profile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedFile:
    """What the first pass learnt of a file that may be described (`describe_file`)."""

    path: Path
    file_format: reader.FileFormat
    sha256: str  # of the file's bytes
    lines: int  # CSV: lines, header included


def check_file(
    path: Path, *, limits: Limits, on_progress: Callable[[float], None] = lambda f: None
) -> CheckedFile:
    """The first, cheap pass: the bytes are CSV text (or the file is Parquet with an acceptable
    schema) and their sha-256. Random bytes, non-UTF-8 text, overlong lines and truncated files
    are refused here, before anything is encrypted or stored."""
    size = path.stat().st_size
    if size == 0:
        raise InputRejected("The file is empty.", "empty")
    if _is_parquet(path, size):
        parquet = reader.parquet_file(path)
        _check_schema(parquet.schema_arrow, limits)
        reader.parquet_check_metadata(parquet, limits.decode_bound(path))
        return CheckedFile(path, reader.FileFormat("parquet"), _file_sha256(path), 0)
    facts = _check_text(path, limits, on_progress)
    return CheckedFile(path, facts.file_format, facts.sha256, facts.lines)


def describe_file(
    checked: CheckedFile,
    *,
    limits: Limits,
    on_progress: Callable[[float], None] = lambda f: None,
    signature_key: copycats.SignatureKey | None = None,
) -> Profile:
    """The second pass, over the rows: schema, column statistics, quality warnings, distinct
    rows and their MinHash, and with `signature_key` the rows' signatures for the copy check.
    The rows are read as the training worker will read them."""
    if checked.file_format.kind == "parquet":
        return _profile_parquet(checked, limits, on_progress, signature_key)
    attempts = reader.csv_attempts(
        checked.path,
        checked.file_format,
        max_columns=limits.max_columns,
        max_line_bytes=limits.max_line_bytes,
        check_schema=lambda schema: _check_schema(schema, limits),
    )
    schema, batches = next(attempts)
    while True:
        try:
            result = _profile_rows(
                schema,
                batches,
                expected_rows=max(checked.lines - 1, 1),
                on_progress=on_progress,
                signature_key=signature_key,
            )
        except reader.Widen as exc:
            schema, batches = attempts.send(reader.widened(str(exc), schema))
            continue
        return _finish(
            result,
            reader.with_schema(checked.file_format, schema),
            checked.sha256,
            min_rows=limits.min_group_rows,
        )


def _profile_parquet(checked: CheckedFile, limits: Limits, on_progress, signature_key) -> Profile:
    parquet = reader.parquet_file(checked.path, text_as_dictionary=True)
    result = _profile_rows(
        parquet.schema_arrow,
        reader.parquet_batches(parquet, bound=limits.decode_bound(checked.path)),
        expected_rows=max(parquet.metadata.num_rows, 1),
        on_progress=on_progress,
        signature_key=signature_key,
    )
    # The types as the training worker reads them (text as such, not as dictionary codes).
    file_format = reader.with_schema(
        checked.file_format, reader.parquet_file(checked.path).schema_arrow
    )
    return _finish(result, file_format, checked.sha256, min_rows=limits.min_group_rows)


@dataclass
class _RowsResult:
    schema: pa.Schema
    rows: int
    stats: list[_ColumnStats]
    sample: pa.Table | None
    row_hashes: np.ndarray | None
    row_hll: _HyperLogLog
    minhash: MinHash
    signatures: copycats.SignatureSample | None = None


def _profile_rows(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    *,
    expected_rows: int,
    on_progress,
    signature_key: copycats.SignatureKey | None = None,
) -> _RowsResult:
    stats = []
    for field_ in schema:
        dtype = field_.type.value_type if pa.types.is_dictionary(field_.type) else field_.type
        stats.append(_ColumnStats(field_.name, dtype, _type_label(dtype)))
    sample = _RowSample(SAMPLE_ROWS, seed=MINHASH_SEED)
    minhash = MinHash(
        num_perm=MINHASH_PERMUTATIONS, seed=MINHASH_SEED, hashfunc=int, scheme="affine64"
    )
    row_hll = _HyperLogLog(14)
    row_hashes: list[np.ndarray] | None = []
    signatures = copycats.RowSignatures(schema, signature_key) if signature_key else None
    rows = kept = 0
    last_report = 0.0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        batch = reader.decoded(batch)
        columns = batch.columns
        hashed = [
            _column_hashes(column, tally=column_stats.wants_tally)
            for column_stats, column in zip(stats, columns, strict=True)
        ]
        hashes = [column_hashes for column_hashes, _ in hashed]
        for column_stats, column, (column_hashes, tally) in zip(
            stats, columns, hashed, strict=True
        ):
            column_stats.add(column, column_hashes, tally)
        combined = _combine_row_hashes(hashes, batch.num_rows)
        if row_hashes is not None:
            row_hashes.append(combined)
            kept += len(combined)
            if kept > ROW_HASH_LIMIT:  # too many rows to keep: count and MinHash them as they go
                for kept_hashes in row_hashes:
                    row_hll.add(kept_hashes)
                    minhash_update(minhash, kept_hashes)
                row_hashes = None
        else:
            row_hll.add(combined)
            minhash_update(minhash, combined)
        sample.add(batch)
        if signatures is not None:
            signatures.add(batch)
        rows += batch.num_rows
        now = time.monotonic()
        if now - last_report > 0.5:
            on_progress(min(rows / expected_rows, 1.0))
            last_report = now
    if rows == 0:
        raise InputRejected("The file has a header but no rows.", "no_rows")
    unique = None
    if row_hashes is not None:
        every = np.concatenate(row_hashes)
        del row_hashes
        every.sort()
        unique = every[np.concatenate(([True], every[1:] != every[:-1]))]
        del every
        minhash_update(minhash, unique)  # once per distinct row
    return _RowsResult(
        schema,
        rows,
        stats,
        sample.table,
        unique,
        row_hll,
        minhash,
        signatures.result() if signatures is not None else None,
    )


def _histogram(values: np.ndarray, low: float, high: float, min_rows: int) -> dict | None:
    """Counts over [low, high] (values beyond it in the outermost bins), bins of fewer than
    `min_rows` values merged into their smaller neighbour."""
    values = values[np.isfinite(values)]
    if len(values) < min_rows or low is None or high is None or low == high:
        return None
    counts, edges = np.histogram(np.clip(values, low, high), bins=HISTOGRAM_BINS, range=(low, high))
    counts, edges = [int(c) for c in counts], [float(e) for e in edges]
    while len(counts) > 1 and min(counts) < min_rows:
        i = counts.index(min(counts))
        if i == 0 or (i < len(counts) - 1 and counts[i + 1] < counts[i - 1]):
            j = i + 1
        else:
            j = i - 1
        first, second = min(i, j), max(i, j)
        counts[first : second + 1] = [counts[first] + counts[second]]
        del edges[second]
    return {"edges": edges, "counts": counts}


def _quantile_levels(count: int, min_rows: int) -> tuple[float, float] | None:
    """The 1st and 99th percentiles, moved inward so at least `min_rows` values lie beyond each:
    never a raw extreme. None when the column has too few values for that."""
    if count < 2 * min_rows:
        return None
    return max(0.01, min_rows / count), min(0.99, 1 - min_rows / count)


def _quantiles(values: pa.Array, label: str, levels: tuple[float, float]) -> dict | None:
    """The values at `levels` in the (sampled) values: interpolated for numbers, the nearest
    ranked value for dates and times."""
    values = values.drop_null()
    if len(values) == 0:
        return None
    if label in {"integer", "float"}:
        numbers = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        numbers = numbers[np.isfinite(numbers)]
        if len(numbers) == 0:
            return None
        low, high = (float(v) for v in np.quantile(numbers, levels))
    else:
        ordered = sorted(values.to_pylist())
        low, high = (ordered[round(q * (len(ordered) - 1))] for q in levels)
    return {"low": _display(low), "high": _display(high), "levels": [round(q, 4) for q in levels]}


def _name_words(name: str) -> str:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    return "_".join(w for w in _SPLIT.split(spaced.lower()) if w)


def _personal_reason(name: str) -> str | None:
    words = _name_words(name)
    if words in PERSONAL_NAMES:
        return PERSONAL_NAMES[words]
    parts = words.split("_")
    for key, reason in PERSONAL_NAMES.items():
        if "_" in key and key in words:
            return reason
        if "_" not in key and key in parts and key not in {"name", "mail", "ip", "zip", "age"}:
            return reason
    return None


def _luhn(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        d = int(char)
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total, double = total + d, not double
    return total % 10 == 0


def _value_pattern(values: list[str]) -> str | None:
    if len(values) < 5:
        return None
    for label, pattern in VALUE_PATTERNS.items():
        if sum(1 for v in values if pattern.match(v.strip())) >= 0.3 * len(values):
            return label
    cards = [re.sub(r"[ -]", "", v) for v in values if CARD_PATTERN.match(v.strip())]
    if sum(1 for c in cards if 13 <= len(c) <= 19 and _luhn(c)) >= 0.3 * len(values):
        return "card numbers"
    return None


def _describe_column(
    column: _ColumnStats, rows: int, sample: pa.Table | None, *, min_rows: int
) -> dict:
    """The public statistics of a column: aggregates over at least `min_rows` rows only (no raw
    minimum or maximum, no value held by fewer rows, no histogram bin of fewer rows). The
    extremes stay in `column` for the quality checks."""
    exact = column.counts is not None
    distinct = len(column.counts) if exact else column.hll.count()
    described: dict = {
        "name": column.name,
        "type": column.label,
        "arrow_type": str(column.dtype),
        "nulls": column.nulls,
        "distinct": distinct,
        "distinct_exact": exact,
        "min_group_rows": min_rows,
    }
    if not exact:  # counted by a sketch: say how far off it may be
        described["distinct_error_bound"] = column.hll.error_bound(distinct)
    sample_values = sample.column(column.name) if sample is not None else None
    sampled = sample is not None and sample.num_rows < rows
    levels = _quantile_levels(column.count, min_rows)
    ordered = {"integer", "float", "timestamp", "date", "time", "duration"}
    if column.label in ordered and column.minimum is not None and levels and sample is not None:
        quantiles = _quantiles(sample_values, column.label, levels)
        if quantiles:
            described["quantiles"] = {**quantiles, "sampled": sampled}
    if column.label in {"integer", "float"} and column.minimum is not None:
        mean = column.total / column.count if column.count else None
        variance = column.total_squares / column.count - mean * mean if column.count else None
        described.update(
            mean=_display(mean),
            std=_display(math.sqrt(max(variance, 0.0))) if variance is not None else None,
        )
        quantiles = described.get("quantiles")
        if (distinct > TOP_VALUES or not exact) and quantiles:
            numbers = pc.cast(sample_values.drop_null(), pa.float64()).to_numpy()
            histogram = _histogram(numbers, quantiles["low"], quantiles["high"], min_rows)
            if histogram:
                described["histogram"] = histogram
                described["histogram_sampled"] = sampled
    if exact and column.counts:
        top = [(v, c) for v, c in column.counts.most_common(TOP_VALUES) if c >= min_rows]
        described["top_values"] = [{"value": _display(v), "count": c} for v, c in top]
        described["top_values_exact"] = True
    elif not exact and column.label in {"string", "boolean"} and sample_values is not None:
        top = Counter(sample_values.drop_null().to_pylist()).most_common(TOP_VALUES)
        top = [(v, c) for v, c in top if c >= min_rows]
        described["top_values"] = [{"value": _display(v), "count": c} for v, c in top]
        described["top_values_exact"] = False
    if column.formula_cells:
        described["formula_cells"] = column.formula_cells
    return described


def _column_warnings(column: _ColumnStats, described: dict, rows: int, sample) -> list[dict]:
    found = []
    name = column.name
    if column.count == 0:
        found.append(
            {"code": "empty_column", "column": name, "message": f"Column {name!r} is empty."}
        )
        return found
    if rows > 1 and described["distinct"] == 1 and described["distinct_exact"]:
        found.append(  # no value quoted: the column may be withheld (personal data)
            {
                "code": "constant_column",
                "column": name,
                "message": f"Column {name!r} holds the same value in every row; it carries no "
                "information.",
            }
        )
    words = _name_words(name)
    id_like = words in ID_NAMES or words.endswith("_id") or words.endswith("_uuid")
    if not id_like and column.count >= 20 and described["distinct_exact"]:
        all_distinct = described["distinct"] == column.count
        if column.label == "integer" and all_distinct:
            span = int(column.maximum) - int(column.minimum) + 1
            id_like = span == column.count  # a run of consecutive numbers: a row number
        elif column.label == "string" and all_distinct:
            id_like = True
    if not id_like and column.label == "string" and sample is not None:
        values = [v for v in sample.column(name).drop_null().to_pylist()[:500]]
        id_like = len(values) >= 5 and all(UUID_PATTERN.match(v) for v in values)
    reason = _personal_reason(name)
    if reason is None and column.label == "string" and sample is not None:
        values = [str(v) for v in sample.column(name).drop_null().to_pylist()[:1000]]
        pattern = _value_pattern(values)
        if pattern:
            reason = f"values that look like {pattern}"
    if id_like and not reason:  # personal data is the stronger finding
        found.append(
            {
                "code": "identifier_column",
                "column": name,
                "message": f"Column {name!r} looks like an identifier (a different value in "
                "every row): it tells rows apart rather than describing them, and may link rows "
                "to people. Drop it unless buyers need it.",
            }
        )
    if reason:
        found.append(
            {
                "code": "personal_data",
                "column": name,
                "message": f"Column {name!r} may hold personal data ({reason}). List it only if "
                "you have the right to, or remove or anonymise the column.",
            }
        )
    if column.formula_cells:
        found.append(  # counted, never quoted: the column may be withheld (personal data)
            {
                "code": "formula_cells",
                "column": name,
                "message": f"Column {name!r} has {column.formula_cells:,} cell(s) that a "
                "spreadsheet would run as a formula. They are kept as text and shown inert here.",
            }
        )
    return found


def _finish(
    result: _RowsResult, file_format: reader.FileFormat, file_sha256: str, *, min_rows: int
) -> Profile:
    columns, warnings = [], []
    for column in result.stats:
        described = _describe_column(column, result.rows, result.sample, min_rows=min_rows)
        columns.append(described)
        warnings.extend(_column_warnings(column, described, result.rows, result.sample))
    header = "\x1f".join(result.schema.names).encode()
    if result.row_hashes is not None:
        unique_rows = len(result.row_hashes)
        rows_digest = hashlib.sha256(header + b"\0" + result.row_hashes.tobytes()).hexdigest()
        duplicates, bound = result.rows - unique_rows, 0
    else:
        unique_rows = min(result.row_hll.count(), result.rows)
        rows_digest = ""
        duplicates, bound = result.rows - unique_rows, result.row_hll.error_bound(unique_rows)
    if duplicates > bound:  # an estimate is a finding only beyond its error
        share = duplicates / result.rows
        warning = {
            "code": "duplicate_rows",
            "message": f"{duplicates:,} row(s) ({share:.1%}) repeat an earlier row exactly.",
            "count": duplicates,
        }
        if bound:
            warning["message"] = (
                f"About {duplicates:,} row(s) ({share:.1%}) repeat an earlier row exactly "
                f"(an estimate: the file has too many rows to compare each one, so the count may "
                f"be off by up to {bound:,})."
            )
            warning.update(estimate=True, error_bound=bound)
        warnings.insert(0, warning)
    return Profile(
        file_format=file_format,
        rows=result.rows,
        columns=columns,
        warnings=warnings,
        file_sha256=file_sha256,
        rows_sha256=rows_digest,
        unique_rows=unique_rows,
        minhash=result.minhash.hashvalues.astype(np.uint64).tobytes(),
        row_signatures=result.signatures,
    )
