"""The one reader of a listed file. The listing detects how a file is written (its `FileFormat`:
format, separator, quoting, encoding, BOM, line endings and the column types it settled on),
records it with the dataset and in the pinned metadata, and reads the rows through this module;
the training worker reads the decrypted bytes through the same functions, so it sees the rows,
column names and types of the listing's profile."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

CSV_BLOCK_SIZE = 2 * 1024 * 1024
PARQUET_BATCH_ROWS = 65_536
DELIMITERS = (",", ";", "\t", "|")
QUOTE_CHAR = '"'
UTF8_BOM = b"\xef\xbb\xbf"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
NUMBER_PATTERN = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ROW_NUMBER = re.compile(r"Row #(\d+)")
# Below this much decoded data, a file's expansion costs too little memory to refuse it.
DECODE_RATIO_FLOOR = 64 * 1024**2
# Bytes a decoded value of each fixed-width Parquet type takes in memory.
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}

logger = logging.getLogger(__name__)

_CONVERSION_ERROR = re.compile(
    r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'", re.S
)


class InputRejected(Exception):
    """The file cannot be listed; the message says why, in words the uploader can act on."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class FileFormat:
    """How a listed file is written, as the listing found it."""

    kind: str  # "csv" or "parquet"
    delimiter: str = ","
    quote_char: str = QUOTE_CHAR  # a quote inside a quoted value is written twice
    encoding: str = "utf-8"  # the only text encoding the listing accepts
    bom: bool = False  # the file starts with a UTF-8 byte order mark (the reader skips it)
    line_ending: str = "\n"  # "\n" or "\r\n"
    # Column name -> Arrow type, as the listing settled them: the reader infers nothing.
    column_types: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FileFormat:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def count_outside_quotes(text: str, delimiter: str) -> int:
    count, quoted = 0, False
    for char in text:
        if char == QUOTE_CHAR:
            quoted = not quoted
        elif char == delimiter and not quoted:
            count += 1
    return count


def text_format(first_line: bytes) -> FileFormat:
    """The separator, BOM and line ending of a CSV file, from its header line (with its end)."""
    bom = first_line.startswith(UTF8_BOM)
    line_ending = "\r\n" if first_line.endswith(b"\r") else "\n"
    header = first_line.decode("utf-8", "replace").removeprefix("\ufeff").rstrip("\r")
    counts = {d: count_outside_quotes(header, d) for d in DELIMITERS}
    delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    return FileFormat("csv", delimiter=delimiter, bom=bom, line_ending=line_ending)


def _arrow_type(name: str) -> pa.DataType | None:
    try:
        return pa.type_for_alias(name)
    except ValueError:  # e.g. a timestamp with a time zone: left to the same inference
        return None


def fixed_types(file_format: FileFormat) -> dict[str, pa.DataType]:
    fixed = {}
    for name, type_name in file_format.column_types.items():
        arrow_type = _arrow_type(type_name)
        if arrow_type is not None:
            fixed[name] = arrow_type
    return fixed


def with_schema(file_format: FileFormat, schema: pa.Schema) -> FileFormat:
    """The format with the column types the listing settled on."""
    types = {}
    for field_ in schema:
        dtype = field_.type.value_type if pa.types.is_dictionary(field_.type) else field_.type
        types[field_.name] = str(dtype)
    return FileFormat(**{**file_format.as_dict(), "column_types": types})


# --- CSV -------------------------------------------------------------------------------------


def open_csv(
    path: Path,
    file_format: FileFormat,
    *,
    column_types: dict[str, pa.DataType],
    bad_rows: list,
    max_line_bytes: int,
):
    def on_invalid_row(row) -> str:
        bad_rows.append(row)
        return "error"

    return pcsv.open_csv(
        str(path),
        read_options=pcsv.ReadOptions(
            block_size=max(CSV_BLOCK_SIZE, 2 * max_line_bytes), use_threads=False
        ),
        parse_options=pcsv.ParseOptions(
            delimiter=file_format.delimiter,
            quote_char=file_format.quote_char,
            double_quote=True,
            newlines_in_values=True,
            invalid_row_handler=on_invalid_row,
        ),
        convert_options=pcsv.ConvertOptions(column_types=column_types, strings_can_be_null=True),
    )


def inert(value: str) -> str:
    """A value as text that no spreadsheet would run as a formula (OWASP: prefix with ')."""
    if value.startswith(FORMULA_PREFIXES) and not NUMBER_PATTERN.match(value.strip()):
        return "'" + value
    return value


def _ragged_row_message(path: Path, row) -> str:
    """Names the line by its number, never by its text (it may hold anyone's data)."""
    text = row.text or ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - len(text.encode()) - 2))
        tail = handle.read().decode("utf-8", "replace").rstrip("\r\n")
    last = bool(text) and tail.endswith(text)
    number = row.number if row.number is not None and row.number > 0 else None
    if last:
        what = f"The last line (line {number:,})" if number else "The last line"
    else:
        what = f"Line {number:,}" if number else "A row"
    hint = (
        " The file looks truncated." if last and row.actual_columns < row.expected_columns else ""
    )
    return (
        f"{what} has {row.actual_columns} field{'s' if row.actual_columns != 1 else ''} where the "
        f"header has {row.expected_columns}.{hint} Every row needs one value per column (an "
        "empty value is fine)."
    )


def not_csv_reason(message: str) -> str:
    """The reader's error without the text of the row it quotes: its row number at most."""
    logger.info("CSV reader error: %s", message)
    found = _ROW_NUMBER.search(message)
    where = f" (row {int(found.group(1)):,})" if found else ""
    return (
        f"The file is not valid CSV: a row could not be read{where}. Check that every row has "
        "one value per column and that quotes pair up."
    )


class Widen(Exception):
    """A later block does not fit the types inferred from the first one."""


def _guarded(reader, bad_rows: list, path: Path) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if bad_rows:
                raise InputRejected(_ragged_row_message(path, bad_rows[0]), "ragged_rows") from None
            raise Widen(str(exc)) from None
        yield batch


def widened(message: str, schema: pa.Schema) -> tuple[str, pa.DataType]:
    """The column a conversion error names, and the wider type it needs (integer -> float ->
    text)."""
    match = _CONVERSION_ERROR.search(message)
    if not match:
        raise InputRejected(not_csv_reason(message), "not_csv")
    name = schema.names[int(match.group(1))]
    current, value = schema.field(name).type, match.group(3)
    if pa.types.is_integer(current) and NUMBER_PATTERN.match(value.strip()):
        return name, pa.float64()
    return name, pa.string()


def csv_attempts(
    path: Path, file_format: FileFormat, *, max_columns: int, max_line_bytes: int, check_schema
) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """Yield (schema, batches) attempts: when a later block does not fit the types inferred from
    the first one, the caller sends (column, wider type) and reads again."""
    column_types = fixed_types(file_format)
    for _attempt in range(2 * max_columns + 1):
        bad_rows: list = []
        try:
            reader = open_csv(
                path,
                file_format,
                column_types=column_types,
                bad_rows=bad_rows,
                max_line_bytes=max_line_bytes,
            )
        except pa.ArrowInvalid as exc:
            if bad_rows:
                raise InputRejected(_ragged_row_message(path, bad_rows[0]), "ragged_rows") from None
            if "Empty CSV file" in str(exc):
                raise InputRejected("The file has no header and no rows.", "empty") from None
            raise InputRejected(not_csv_reason(str(exc)), "not_csv") from None
        check_schema(reader.schema)
        retry = yield reader.schema, _guarded(reader, bad_rows, path)
        if retry is None:
            return
        name, target = retry
        column_types[name] = target
    raise InputRejected("The column types could not be settled.", "not_csv")


# --- Parquet ---------------------------------------------------------------------------------


def parquet_file(path: Path, *, text_as_dictionary: bool = False) -> pq.ParquetFile:
    """`text_as_dictionary`: text columns are read as codes and distinct values, so their decoded
    size is known before a value is expanded."""
    try:
        parquet = pq.ParquetFile(str(path))
        if text_as_dictionary:
            names = _dictionary_text_columns(parquet)
            if names:
                parquet = pq.ParquetFile(str(path), read_dictionary=names)
        return parquet
    except (pa.ArrowException, OSError) as exc:
        logger.info("Parquet footer error in %s: %s", path.name, exc)
        raise InputRejected(
            "The file is not a readable Parquet file: its footer (the schema and where the data "
            "lies) could not be read.",
            "bad_parquet",
        ) from None


def _dictionary_text_columns(parquet: pq.ParquetFile) -> list[str]:
    """Every text column, not only those whose metadata lists a dictionary: the metadata is the
    writer's word, the pages decide how values are decoded."""
    text = (
        pa.types.is_string,
        pa.types.is_binary,
        pa.types.is_large_string,
        pa.types.is_large_binary,
    )
    return [f.name for f in parquet.schema_arrow if any(is_text(f.type) for is_text in text)]


@dataclass(frozen=True)
class DecodeBound:
    """How much a Parquet file may take once decoded: at most `max_bytes`, and at most
    `max_ratio` times its size on disk (once past DECODE_RATIO_FLOOR)."""

    max_bytes: int
    max_ratio: int
    file_size: int

    @property
    def limit(self) -> int:
        return min(self.max_bytes, max(self.max_ratio * self.file_size, DECODE_RATIO_FLOOR))

    def check(self, decoded_bytes: int) -> None:
        if decoded_bytes <= self.limit:
            return
        if self.limit == self.max_bytes:
            reason = (
                f"Decoded, the data of this Parquet file would take more than "
                f"{size_text(self.limit)} of memory; at most {size_text(self.max_bytes)} can be "
                "listed. Split it into smaller files."
            )
        else:
            reason = (
                f"Decoded, the data of this Parquet file would take more than "
                f"{size_text(self.limit)} of memory, over {self.max_ratio} times its size on "
                f"disk ({size_text(self.file_size)}). Files that expand this much are refused "
                "before they are decoded: they would exhaust the worker's memory. Store long "
                "repeated values once, or split the file."
            )
        raise InputRejected(reason, "decoded_too_large")


def size_text(size: int) -> str:
    for unit, name in ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if size >= unit:
            return f"{size / unit:.1f}".removesuffix(".0") + f" {name}"
    return f"{size:,} bytes"


def parquet_check_metadata(parquet: pq.ParquetFile, bound: DecodeBound) -> None:
    """Refuse from the footer alone what is sure to decode past the bound: fixed-width values
    take their width each whatever their encoding; text at least its uncompressed pages (what
    its dictionary codes expand to is counted as the batches are read)."""
    metadata, schema = parquet.metadata, parquet.schema
    decoded = 0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            kind = chunk.physical_type
            if kind == "BYTE_ARRAY":
                # Values built from shared prefixes: their size is known only once decoded.
                if "DELTA_BYTE_ARRAY" in chunk.encodings:
                    raise InputRejected(
                        f"Column {chunk.path_in_schema!r} is written with the DELTA_BYTE_ARRAY "
                        "encoding, whose decoded size cannot be checked before it is decoded. "
                        "Write the file with the usual dictionary or plain encoding (the "
                        "default of pandas, pyarrow and Spark).",
                        "unchecked_encoding",
                    )
                decoded += max(chunk.total_uncompressed_size, 4 * chunk.num_values)
            elif kind == "FIXED_LEN_BYTE_ARRAY":
                decoded += chunk.num_values * max(schema.column(index).length, 1)
            else:
                decoded += chunk.num_values * _FIXED_WIDTH.get(kind, 8)
        bound.check(decoded)


def decoded_size(batch: pa.RecordBatch) -> int:
    """Bytes the batch takes once its dictionary-encoded columns are expanded, counted from the
    codes and the lengths of the distinct values, without expanding them."""
    total = 0
    for column in batch.columns:
        if not pa.types.is_dictionary(column.type):
            total += column.nbytes
            continue
        dictionary = column.dictionary
        if not (pa.types.is_string(dictionary.type) or pa.types.is_binary(dictionary.type)):
            total += len(column) * max(dictionary.nbytes // max(len(dictionary), 1), 1)
            continue
        lengths = pc.take(pc.binary_length(dictionary), column.indices)
        total += (pc.sum(lengths).as_py() or 0) + 4 * len(column)
    return total


def parquet_batches(
    parquet: pq.ParquetFile, *, bound: DecodeBound | None = None
) -> Iterator[pa.RecordBatch]:
    """The rows in batches; with `bound`, each batch is counted before it is handed over, and the
    file refused as soon as the running total passes the bound."""
    decoded = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            if bound is not None:
                decoded += decoded_size(batch)
                bound.check(decoded)
            yield batch
    except (pa.ArrowException, OSError) as exc:
        logger.info("Parquet data error: %s", exc)
        raise InputRejected(
            "The Parquet file is damaged: some of its data pages could not be decoded.",
            "bad_parquet",
        ) from None


def decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dictionary-encoded columns as their values: the profile describes values, not codes."""
    columns = [
        column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


# --- the whole table ---------------------------------------------------------------------------


def read_table(path: Path, file_format: FileFormat, *, max_line_bytes: int) -> pa.Table:
    """Every row of a listed file, as the listing read them (the training worker's reader)."""
    if file_format.kind == "parquet":
        parquet = parquet_file(path)
        batches = [decoded(b) for b in parquet_batches(parquet) if b.num_rows]
        schema = pa.schema(
            [
                pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                for f in parquet.schema_arrow
            ]
        )
        return pa.Table.from_batches(batches, schema=schema)
    attempts = csv_attempts(
        path,
        file_format,
        max_columns=max(len(file_format.column_types), 1000),
        max_line_bytes=max_line_bytes,
        check_schema=lambda schema: None,
    )
    schema, batches = next(attempts)
    while True:
        try:
            return pa.Table.from_batches(list(batches), schema=schema)
        except Widen as exc:
            schema, batches = attempts.send(widened(str(exc), schema))


def detect_format(path: Path) -> FileFormat:
    """The format of a file listed before formats were recorded: detected as the listing does."""
    with path.open("rb") as handle:
        head = handle.read(4)
        if head == b"PAR1":
            return FileFormat("parquet")
        handle.seek(0)
        first_line = handle.readline(1024 * 1024).rstrip(b"\n")
    return text_format(first_line)
