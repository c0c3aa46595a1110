"""The listing pipeline's work on an upload, apart from the state machine in `services`: check
the bytes, seal them (encrypt, pin, read back) while the rows are described, compare with other
listings (exact duplicates and copies of another owner's rows are refused, see
`datasets.copycats`; near-duplicates are warned about), and pin the public metadata. Runs in the
worker; moves no status."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q

from datasets.models import Dataset, MinHashBand, RowSignature, data_key_context
from marketplace.crypto import CHUNK_SIZE, encrypt_stream, new_data_key, wrap_data_key
from marketplace.did import did_for
from marketplace.ipfs import (
    IpfsError,
    IpfsUnavailable,
    cat_sha256,
    pin_cid,
    pin_file,
    raw_cid_for_sha256,
    unpin,
)

if TYPE_CHECKING:  # the parsing libraries load in the workers only (see listing_prepare)
    from datasets import copycats, profiling

Stage = Dataset.Stage
METADATA_MAX_BYTES = 1024 * 1024  # one IPFS block: its CID is then its sha-256
OnStage = Callable[[str, float], None]  # (stage, fraction of it done)


# --- what an upload pinned -------------------------------------------------------------------


def unpin_listing(dataset: Dataset) -> None:
    """Unpin what processing pinned for the listing (its ciphertext and metadata)."""
    for cid in {dataset.cid, dataset.metadata_cid} - {""}:
        unpin(cid)


def unpin_upload(dataset: Dataset) -> None:
    """Unpin the staged upload (see datasets.uploads.stage)."""
    unpin(dataset.upload_cid)


# --- comparing with other listings --------------------------------------------------------


def exact_duplicate(dataset: Dataset, file_sha256: str, rows_sha256: str = "") -> Dataset | None:
    """An active listing with the same bytes, or the same distinct rows in another order."""
    same = Q(file_sha256=file_sha256)
    if rows_sha256:
        same |= Q(rows_sha256=rows_sha256)
    return Dataset.objects.filter(same, status__in=Dataset.ACTIVE).exclude(pk=dataset.pk).first()


def _near_duplicates(dataset: Dataset, profile: profiling.Profile) -> list[dict]:
    from datasets import profiling

    keys = profiling.minhash_band_keys(profile.minhash)
    shares_a_band = Q()
    for band, key in enumerate(keys):
        shares_a_band |= Q(band=band, key=key)
    candidate_ids = (
        MinHashBand.objects.filter(shares_a_band)
        .exclude(dataset_id=dataset.pk)
        .values_list("dataset_id", flat=True)
        .distinct()
    )
    candidates = (
        # Only listings: a warning is public and must not name an upload still unsigned.
        Dataset.objects.filter(pk__in=list(candidate_ids[:500]), status=Dataset.Status.LISTED)
        .exclude(pk=dataset.parent_id or 0)
        .only("pk", "title", "minhash")
    )
    mine = profiling.minhash_from_bytes(profile.minhash)
    found = []
    for other in candidates:
        similarity = mine.jaccard(profiling.minhash_from_bytes(bytes(other.minhash)))
        if similarity >= settings.DATASET_NEAR_DUPLICATE_THRESHOLD:
            found.append(
                {
                    "code": "near_duplicate",
                    "message": f"About {similarity:.0%} of the distinct rows are shared with "
                    f"“{other.title}” (dataset #{other.pk}).",
                    "similar_dataset": other.pk,
                    "similarity": round(similarity, 2),
                }
            )
    found.sort(key=lambda w: -w["similarity"])
    return found[:5]


def _withhold_values(columns: list[dict], warnings: list[dict]) -> list[dict]:
    """No sample values of columns that may identify people appear in the public statistics."""
    sensitive = {
        w["column"] for w in warnings if w["code"] in {"personal_data", "identifier_column"}
    }
    for column in columns:
        if column["name"] in sensitive:
            for key in ("top_values", "quantiles", "histogram"):
                column.pop(key, None)
            column["values_withheld"] = True
    return columns


def _metadata_document(
    dataset: Dataset, profile: profiling.Profile, columns, warnings, wrapped_key: bytes
) -> bytes:
    """The public description of a listing, pinned to IPFS; its sha-256 goes on-chain. With the
    chain, it is all a database rebuilt from them needs to know about the listing (see
    `chain.rebuild`): the data key is in it wrapped under the master key, which it is safe to
    publish (AES-GCM; only the master key's holder unwraps it)."""
    document = {
        "type": "data-marketplace/dataset-metadata/v1",
        # The marketplace's number of the dataset: a rebuilt catalogue keeps its addresses.
        "dataset_id": dataset.pk,
        "title": dataset.title,
        "description": dataset.description,
        "license": dataset.license,
        "tags": dataset.tags,
        "owner": did_for(dataset.owner.address, settings.CHAIN_ID),
        "price_wei": str(dataset.price_wei),
        "dp_epsilon_max": dataset.dp_epsilon_max,
        "parent_listing_id": dataset.parent.listing_id if dataset.parent_id else None,
        "content": {
            "cid": dataset.cid,
            "sha256": dataset.content_sha256,
            "format": profile.file_format.kind,
            "reading": profile.file_format.as_dict(),
            "encryption": {"scheme": "AES-256-GCM, chunked", "chunk_size": CHUNK_SIZE},
            "key": {
                "wrapped": base64.b64encode(wrapped_key).decode(),
                "wrapped_by": "the marketplace's master key (AES-256-GCM)",
                "bound_to": "sha256",
            },
            "size_bytes": dataset.size_bytes,  # of the uploaded file
        },
        "rows": profile.rows,
        "unique_rows": profile.unique_rows,
        "columns": columns,
        "quality_warnings": warnings,
        # Flagged columns the owner lets buyers' models use (the signature covers this document).
        "feature_opt_in": dataset.feature_opt_in,
        "created": dataset.created.isoformat(),
    }
    raw = json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    if len(raw) > METADATA_MAX_BYTES:  # very wide tables: the schema without statistics
        document["columns"] = [{"name": c["name"], "type": c["type"]} for c in columns]
        raw = json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    return raw


class _Sealing:
    """Encrypt the upload, add the ciphertext to the IPFS node and read it back, in a thread of
    its own: the encryption runs while the caller checks the bytes, the adding (once the caller
    approves: bad input is never sent to the node) while it describes the rows, so the node
    works on the ciphertext while this process works on the plaintext. The thread only adds the
    blocks; the caller pins them (`pin_and_record`) and records the CID on the row at once, so a
    worker killed in between leaves no pin behind, on any host."""

    def __init__(self, data_key: bytes, plain: Path, encrypted: Path, name: str):
        self.stage = Stage.ENCRYPTING
        self._path = plain
        self._encrypted = encrypted
        self._decided = threading.Event()
        self._approved = False
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"seal-{name}")
        self._future = executor.submit(self._run, data_key)
        executor.shutdown(wait=False)

    def _run(self, data_key: bytes) -> tuple[str, int, str] | None:
        encrypted = self._encrypted
        with self._path.open("rb") as source, encrypted.open("wb") as target:
            size, sha256 = encrypt_stream(source, target, data_key)
        self._decided.wait()
        if not self._approved:
            return None
        self.stage = Stage.PINNING
        cid = pin_file(encrypted, pin=False)
        self.stage = Stage.VERIFYING
        read_sha256, read_size = cat_sha256(cid)
        if (read_sha256, read_size) != (sha256, size):
            raise IpfsUnavailable(
                f"the IPFS node returned other bytes for {cid} than were added "
                f"({read_size} bytes, sha-256 {read_sha256[:12]}…)"
            )
        return cid, size, sha256

    def approve(self) -> None:
        """The bytes passed the check: add them."""
        self._approved = True
        self._decided.set()

    def result(self, on_wait: Callable[[str], None]) -> tuple[str, int, str]:
        """(CID, ciphertext bytes, ciphertext sha-256), added but not pinned; `on_wait(stage)`
        twice a second until then. Raises what the thread raised."""
        while True:
            try:
                return self._future.result(timeout=0.5)
            except FutureTimeout:
                on_wait(self.stage)

    def settle(self) -> None:
        """Give up on this attempt: nothing more is added; wait for the thread, whatever its
        outcome (nothing it added is pinned)."""
        self._decided.set()
        wait([self._future])


def _pin_and_record(dataset: Dataset, field: str, cid: str) -> None:
    """Pin what the node holds and note it on the row at once: whoever gives up unpins it."""
    pin_cid(cid)
    Dataset.objects.filter(pk=dataset.pk).update(**{field: cid})
    setattr(dataset, field, cid)


def duplicate_reason(dataset: Dataset, duplicate: Dataset) -> str:
    """Names the duplicate only if it is listed or the uploader's own: another owner's upload
    that is not listed yet stays private."""
    own = duplicate.owner_id == dataset.owner_id
    if not own and duplicate.status != Dataset.Status.LISTED:
        return (
            "The same data is already being listed by another owner. An exact duplicate cannot "
            "be listed again."
        )
    return (
        f"The same data is already listed as “{duplicate.title}” (dataset #{duplicate.pk}"
        f"{', yours' if own else ''}). An exact duplicate cannot be listed again."
    )


def _throttled(on_stage: OnStage, stage: str) -> Callable[[float], None]:
    """A progress callback that writes the dataset row at most twice a second."""
    last = 0.0

    def report(fraction: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.5:
            last = now
            on_stage(stage, fraction)

    return report


# --- the whole preparation ---------------------------------------------------------------------


@dataclass
class Prepared:
    """What a listing holds once its upload is checked, described, sealed and its metadata
    pinned: the state machine records it and waits for the owner's signature."""

    profile: profiling.Profile
    columns: list[dict]
    warnings: list[dict]
    cid: str
    encrypted_size: int
    content_sha256: str
    metadata_cid: str
    metadata_sha256: str
    wrapped_data_key: bytes


def listing_prepare(dataset: Dataset, *, on_stage: OnStage) -> Prepared:
    """Fetch the staged upload into a private working folder of this host, then check the
    bytes while a second thread encrypts them, describe the rows while that thread adds the
    ciphertext to the IPFS node and reads it back, and pin the metadata. Bad input, exact
    duplicates and copies of another owner's listing raise `InputRejected`; each pin is
    recorded on the row the moment it exists, so whoever gives up unpins it. Raises
    `UploadGone` when the node no longer has the staged upload."""
    from datasets import uploads

    suffix = Path(dataset.original_filename).suffix.lower()
    with uploads.working_folder() as folder:
        try:
            sealed = uploads.fetch_staged(dataset.upload_cid, folder / f"upload{suffix}")
        except IpfsError as exc:
            raise UploadGone(str(exc)) from exc
        # The upload rests encrypted: its plain bytes exist only while this worker reads them.
        with uploads.plaintext(sealed) as plain:
            return _listing_prepare(dataset, plain, folder, on_stage=on_stage)


class UploadGone(Exception):
    """The staged upload cannot be read back from the IPFS node."""


def _limits() -> profiling.Limits:
    from datasets import profiling

    return profiling.Limits(
        max_columns=settings.DATASET_MAX_COLUMNS,
        max_line_bytes=settings.DATASET_MAX_LINE_BYTES,
        max_decoded_bytes=settings.DATASET_MAX_DECODED_BYTES,
        max_decode_ratio=settings.DATASET_MAX_DECODE_RATIO,
        min_group_rows=settings.PRIVACY_MIN_GROUP_ROWS,
    )


def _listing_prepare(dataset: Dataset, path: Path, folder: Path, *, on_stage: OnStage) -> Prepared:
    from datasets import copycats, profiling
    from datasets.reader import InputRejected

    limits = _limits()
    on_stage(Stage.CHECKING, 0.0)
    checking = _throttled(on_stage, Stage.CHECKING)
    data_key = new_data_key()
    sealing = _Sealing(data_key, path, folder / "ciphertext", name=str(dataset.pk))
    try:
        # The cheap pass first: bad bytes are refused before anything is sent to the node.
        checked = profiling.check_file(path, limits=limits, on_progress=lambda f: checking(0.1 * f))
        duplicate = exact_duplicate(dataset, checked.sha256)
        if duplicate is None:
            sealing.approve()
            profile = profiling.describe_file(
                checked,
                limits=limits,
                on_progress=lambda f: checking(0.1 + 0.9 * f),
                signature_key=copycats.signature_key(),
            )
            on_stage(Stage.COMPARING, 0.0)
            duplicate = exact_duplicate(dataset, profile.file_sha256, profile.rows_sha256)
        if duplicate is not None:
            raise InputRejected(duplicate_reason(dataset, duplicate), "duplicate")
        copied = copycats.copied_listing(dataset=dataset, sample=profile.row_signatures)
        if copied is not None:
            raise InputRejected(copycats.copy_reason(*copied), "copy")
    except BaseException:
        sealing.settle()
        raise
    warnings = _near_duplicates(dataset, profile) + profile.warnings
    columns = _withhold_values(profile.columns, warnings)

    on_stage(sealing.stage, 0.0)
    cid, encrypted_size, content_sha256 = sealing.result(on_wait=lambda s: on_stage(s, 0.0))
    _pin_and_record(dataset, "cid", cid)
    dataset.content_sha256 = content_sha256

    wrapped_data_key = wrap_data_key(
        data_key, settings.MASTER_KEY, context=data_key_context(content_sha256)
    )
    metadata = _metadata_document(dataset, profile, columns, warnings, wrapped_data_key)
    metadata_path = folder / "metadata.json"
    metadata_path.write_bytes(metadata)
    metadata_sha256 = hashlib.sha256(metadata).hexdigest()
    metadata_cid = pin_file(metadata_path, raw_single_block=True, pin=False)
    _pin_and_record(dataset, "metadata_cid", metadata_cid)
    if metadata_cid != raw_cid_for_sha256(metadata_sha256):
        raise IpfsError(f"the metadata was stored as {metadata_cid}, not as one raw block")
    return Prepared(
        profile=profile,
        columns=columns,
        warnings=warnings,
        cid=cid,
        encrypted_size=encrypted_size,
        content_sha256=content_sha256,
        metadata_cid=metadata_cid,
        metadata_sha256=metadata_sha256,
        wrapped_data_key=wrapped_data_key,
    )


def minhash_bands(dataset_id: int, profile: profiling.Profile) -> list[MinHashBand]:
    from datasets import profiling

    return [
        MinHashBand(dataset_id=dataset_id, band=band, key=key)
        for band, key in enumerate(profiling.minhash_band_keys(profile.minhash))
    ]


def row_signatures_save(dataset_id: int, sample: copycats.SignatureSample | None) -> None:
    """The listing's sampled row signatures, for later uploads' copy check (they count once it
    is listed)."""
    from datasets import copycats

    if sample is None:
        return
    summary, rows = copycats.index_rows(dataset_id, sample)
    summary.save()
    RowSignature.objects.bulk_create(rows, batch_size=1000)


def row_signatures_read(path: Path) -> copycats.SignatureSample:
    """The row signatures of a listing's (decrypted) file, read as its listing read it."""
    from datasets import copycats, profiling

    limits = _limits()
    checked = profiling.check_file(path, limits=limits)
    profile = profiling.describe_file(
        checked, limits=limits, signature_key=copycats.signature_key()
    )
    return profile.row_signatures
