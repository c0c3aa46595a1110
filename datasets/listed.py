"""A listed file's rows, for whoever holds its data key: the training worker (the key unwrapped
from the marketplace's record) or a validator node (the key handed to it). The ciphertext is
fetched from IPFS by its CID, its sha-256 checked against the hash the chain recorded, decrypted
into a private file (in memory when it fits) that is removed once read, and read as the listing
read it (`datasets.reader`, in the format the listing's metadata records). No database here."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
from django.conf import settings

from marketplace.ipfs import iter_cat


class ContentMismatch(Exception):
    """The bytes behind a CID are not the ones the chain recorded."""


@contextmanager
def listed_file(
    *, cid: str, expected_sha256: str, data_key: bytes, workdir: Path, label: str
) -> Iterator[Path]:
    """The decrypted file of the listing `label` names (e.g. "listing 3"), while the caller
    reads it: its ciphertext from IPFS by `cid`, checked against `expected_sha256` (hex)."""
    from datasets.uploads import plaintext_path
    from marketplace.crypto import decrypt_stream

    sealed = workdir / f"{label.replace(' ', '-')}.enc"
    digest = hashlib.sha256()
    try:
        with sealed.open("wb") as out:
            for chunk in iter_cat(cid):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256.lower():
            raise ContentMismatch(
                f"The bytes on IPFS for {label} ({cid}) do not match the hash recorded on-chain."
            )
        plain = plaintext_path(size=sealed.stat().st_size, beside=workdir, suffix=".plain")
        try:
            with sealed.open("rb") as src, plain.open("wb") as dst:
                decrypt_stream(src, dst, data_key)
            sealed.unlink()
            yield plain
        finally:
            plain.unlink(missing_ok=True)
    finally:
        sealed.unlink(missing_ok=True)


def read_listed_file(plain: Path, reading: dict | None) -> pa.Table:
    """Every row of a decrypted listed file, read as its listing read it: `reading` is the
    listing's recorded `FileFormat` (the metadata's content.reading); a listing made before
    formats were recorded has none, and its format is detected as the listing detected it."""
    from datasets import reader

    file_format = reader.FileFormat.from_dict(reading) if reading else reader.detect_format(plain)
    return reader.read_table(plain, file_format, max_line_bytes=settings.DATASET_MAX_LINE_BYTES)


def listed_rows(
    *,
    cid: str,
    expected_sha256: str,
    data_key: bytes,
    reading: dict | None,
    workdir: Path,
    label: str,
) -> pa.Table:
    """A listing's rows as a pyarrow Table; its decrypted file is gone when this returns."""
    with listed_file(
        cid=cid, expected_sha256=expected_sha256, data_key=data_key, workdir=workdir, label=label
    ) as plain:
        return read_listed_file(plain, reading)
