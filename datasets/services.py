"""Dataset writes: a listing from an upload, the pipeline's steps (describe, encrypt, pin, sign,
register), and the chain indexer's confirmation. Every status move is a guarded update, so a
step delivered twice does nothing the second time."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_typed_data
from rest_framework import status as http
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from chain.client import ChainMisconfigured, ChainUnavailable, decode_revert
from chain.events import ChainEvent
from chain.models import ChainTransaction
from chain.wrappers import DatasetRegistry, ListingTerms
from datasets.models import LICENSES, MAX_PRICE_WEI, Dataset, MinHashBand
from datasets.selectors import description_excerpt
from datasets.storage import (
    IpfsError,
    cat_sha256,
    pin_file,
    raw_cid_for_sha256,
    unpin,
)
from datasets.uploads import UploadOnDisk, upload_dir
from marketplace.crypto import CHUNK_SIZE, encrypt_stream, new_data_key, wrap_data_key
from marketplace.did import did_for
from marketplace.errors import ApplicationError
from marketplace.ipfs import IpfsUnavailable
from marketplace.models import User

if TYPE_CHECKING:
    from datasets import profiling

logger = logging.getLogger(__name__)

Status, Stage = Dataset.Status, Dataset.Stage
ACCEPTED_EXTENSIONS = {".csv", ".tsv", ".txt", ".parquet", ".pq"}
SIGNATURE_PATTERN = re.compile(r"^0x[0-9a-fA-F]{130}$")
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9 ._+-]{0,31}$")
MAX_TAGS = 10
METADATA_MAX_BYTES = 1024 * 1024  # one IPFS block: its CID is then its sha-256
REVERT_MESSAGES = {
    "InvalidSignature": "The registry refused the signature: the owner's nonce changed since it "
    "was made (another listing was signed meanwhile).",
    "SignatureExpired": "The signature expired before it reached the registry.",
    "ParentNotOwned": "The registry says the parent listing belongs to someone else.",
    "UnknownListing": "The registry does not know the parent listing.",
    "PriceTooHigh": "The price is above what the registry can hold (2^88 - 1 wei).",
    "EmptyCid": "The listing has no CID.",
}
RESIGN_ERRORS = {"InvalidSignature", "SignatureExpired"}


def _refuse(message: str, code: str, status_code: int = http.HTTP_400_BAD_REQUEST):
    return ApplicationError(message, {"code": code}, status_code=status_code)


# --- create ------------------------------------------------------------------------------------


def parse_price_wei(value) -> int:
    """An integer number of wei from a form or JSON value; no floats, no exponents."""
    text = str(value).strip() if value is not None else ""
    if isinstance(value, bool) or not re.fullmatch(r"\d+", text):
        if re.fullmatch(r"-\s*\d+(\.\d+)?", text):
            raise _refuse("The price cannot be negative.", "bad_price")
        raise _refuse(
            f"The price must be a whole number of wei (e.g. 10000000000000000 for 0.01 ETH), "
            f"not {text[:40]!r}.",
            "bad_price",
        )
    price = int(text)
    if price > MAX_PRICE_WEI:
        raise _refuse("The price is above what the registry can hold (2^88 - 1 wei).", "bad_price")
    return price


def parse_tags(value) -> list[str]:
    if value in (None, ""):
        return []
    items = value if isinstance(value, list | tuple) else [value]
    tags: list[str] = []
    for item in (part for entry in items for part in str(entry).split(",")):
        tag = " ".join(str(item).strip().lower().split())
        if not tag:
            continue
        if not TAG_PATTERN.match(tag):
            raise _refuse(
                f"The tag {tag[:40]!r} is not valid: up to 32 letters, digits, spaces or . _ + -",
                "bad_tag",
            )
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise _refuse(f"At most {MAX_TAGS} tags.", "bad_tag")
    return tags


def _search_text(*, title: str, description: str, tags: list[str], columns: list[dict]) -> str:
    names = " ".join(c["name"] for c in columns)
    return "\n".join([title, description, " ".join(tags), names]).lower()


@transaction.atomic
def dataset_create(
    *,
    owner: User,
    upload: UploadOnDisk | Path,
    original_filename: str,
    title: str,
    description: str = "",
    license: str,
    price_wei,
    tags=None,
    parent_id: int | None = None,
    enqueue: bool = True,
) -> Dataset:
    """A new listing in `processing`, its file kept for the worker, which is then asked to
    describe, encrypt and pin it. `upload` is an upload of this request or a file of ours."""
    if not owner.address:
        raise _refuse(
            "Sign in with your wallet to list datasets: listings belong to an address.",
            "no_address",
            http.HTTP_403_FORBIDDEN,
        )
    name = Path(original_filename or "").name
    extension = Path(name).suffix.lower()
    if extension not in ACCEPTED_EXTENSIONS:
        hint = (
            " Export spreadsheets as CSV first." if extension in {".xlsx", ".xls", ".ods"} else ""
        )
        raise _refuse(
            f"Upload a CSV or Parquet file (.csv or .parquet), not "
            f"{extension or 'a file without an extension'}.{hint}",
            "bad_file_type",
        )
    source = Path(upload.temporary_file_path()) if isinstance(upload, UploadOnDisk) else upload
    size = source.stat().st_size
    if size == 0:
        raise _refuse("The file is empty.", "empty_file")
    valid_licenses = [code for code, _ in LICENSES]
    if license not in valid_licenses:
        raise _refuse(
            f"Unknown license {str(license)[:40]!r}: choose one of {', '.join(valid_licenses)}.",
            "bad_license",
        )
    price = parse_price_wei(price_wei)
    tag_list = parse_tags(tags)
    title = " ".join((title or "").split())
    if not title:
        raise _refuse("Give the dataset a title.", "no_title")
    parent = None
    if parent_id not in (None, ""):
        parent = Dataset.objects.filter(pk=parent_id).first()
        if parent is None:
            raise _refuse(f"There is no dataset #{parent_id} to be the parent.", "bad_parent")
        if parent.owner_id != owner.pk:
            raise _refuse(
                f"Dataset #{parent.pk} belongs to another owner: a new version can only follow "
                "one of your own listings.",
                "parent_not_owned",
                http.HTTP_403_FORBIDDEN,
            )
        if parent.status != Status.LISTED:
            raise _refuse(
                f"Dataset #{parent.pk} is not listed yet: a new version must follow a listing.",
                "parent_not_listed",
            )
    dataset = Dataset(
        owner=owner,
        parent=parent,
        title=title,
        description=description or "",
        license=license,
        tags=tag_list,
        price_wei=Decimal(price),
        excerpt=description_excerpt(description or ""),
        original_filename=name[:255],
        size_bytes=size,
        search_text=_search_text(
            title=title, description=description or "", tags=tag_list, columns=[]
        ),
        tag_index="".join(f"|{t}" for t in tag_list) + "|",
    )
    dataset.full_clean()
    dataset.save()
    # Unique across databases too (a development and a test database may share the directory).
    destination = upload_dir() / f"dataset-{dataset.pk}-{secrets.token_hex(6)}{extension}"
    if isinstance(upload, UploadOnDisk):
        upload.claim(destination)
    else:
        shutil.copyfile(source, destination)
    Dataset.objects.filter(pk=dataset.pk).update(upload_path=str(destination))
    dataset.upload_path = str(destination)
    if enqueue:
        from datasets.tasks import process_dataset

        transaction.on_commit(lambda: process_dataset.delay(dataset.pk))
    return dataset


# --- the pipeline: describe, compare, encrypt, pin -----------------------------------------------


def _set_stage(dataset_id: int, status: str, stage: str, fraction: float = 0.0) -> None:
    Dataset.objects.filter(pk=dataset_id, status=status).update(
        stage=stage, progress=max(0, min(100, int(fraction * 100)))
    )


def _work_files(dataset: Dataset) -> list[Path]:
    """The upload and what processing writes beside it (ciphertext, metadata, pin marker)."""
    if not dataset.upload_path:
        return []
    path = Path(dataset.upload_path)
    suffixes = (".enc", ".meta.json", ".cid")
    return [path] + [path.with_name(path.name + suffix) for suffix in suffixes]


def _delete_files(dataset: Dataset) -> None:
    for path in _work_files(dataset):
        path.unlink(missing_ok=True)


def _pin_marker(dataset: Dataset) -> Path | None:
    """Where the sealing thread notes the ciphertext's CID the moment it is pinned, before the
    dataset row records it: a retry or a failure unpins it even if the process died between."""
    if not dataset.upload_path:
        return None
    path = Path(dataset.upload_path)
    return path.with_name(path.name + ".cid")


def _unpin_all(dataset: Dataset) -> None:
    marker = _pin_marker(dataset)
    pending = marker.read_text().strip() if marker and marker.exists() else ""
    for cid in {dataset.cid, dataset.metadata_cid, pending} - {""}:
        unpin(cid)
    if marker:
        marker.unlink(missing_ok=True)


def dataset_reject(*, dataset_id: int, reason: str) -> bool:
    """Bad input: `rejected` with the reason; nothing stays pinned or on disk."""
    dataset = Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).first()
    if dataset is None:
        return False
    _unpin_all(dataset)
    moved = Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).update(
        status=Status.REJECTED,
        stage=Stage.DONE,
        progress=100,
        status_message=reason,
        cid="",
        metadata_cid="",
        upload_path="",
    )
    _delete_files(dataset)
    return bool(moved)


def _transaction_may_be_mined(dataset: Dataset) -> bool:
    base = _listing_intent_base(dataset)
    return (
        ChainTransaction.objects.filter(Q(intent=base) | Q(intent__startswith=f"{base}:"))
        .exclude(status=ChainTransaction.Status.REVERTED)
        .exists()
    )


def dataset_fail(*, dataset_id: int, reason: str) -> bool:
    """An infrastructure problem outlasted the retries: `failed`, pins removed, unless a listing
    transaction was already sent (if it is mined, the indexer still finds the listing)."""
    dataset = (
        Dataset.objects.filter(pk=dataset_id, status__in=[Status.PROCESSING, Status.REGISTERING])
        .select_related("owner")
        .first()
    )
    if dataset is None:
        return False
    keep_pins = dataset.status == Status.REGISTERING and _transaction_may_be_mined(dataset)
    if not keep_pins:
        try:
            _unpin_all(dataset)
        except (IpfsUnavailable, IpfsError) as exc:
            logger.warning("dataset %s: could not unpin after failure: %s", dataset_id, exc)
    moved = Dataset.objects.filter(pk=dataset_id, status=dataset.status).update(
        status=Status.FAILED,
        stage=Stage.DONE,
        status_message=reason,
        **({} if keep_pins else {"cid": "", "metadata_cid": ""}),
        upload_path="",
    )
    _delete_files(dataset)
    return bool(moved)


def _exact_duplicate(dataset: Dataset, file_sha256: str, rows_sha256: str = "") -> Dataset | None:
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
        Dataset.objects.filter(pk__in=list(candidate_ids[:500]), status__in=Dataset.ACTIVE)
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
            for key in ("top_values", "min", "max", "histogram"):
                column.pop(key, None)
            column["values_withheld"] = True
    return columns


def _metadata_document(dataset: Dataset, profile: profiling.Profile, columns, warnings) -> bytes:
    """The public description of a listing, pinned to IPFS; its sha-256 goes on-chain."""
    document = {
        "type": "data-marketplace/dataset-metadata/v1",
        "title": dataset.title,
        "description": dataset.description,
        "license": dataset.license,
        "tags": dataset.tags,
        "owner": did_for(dataset.owner.address, settings.CHAIN_ID),
        "price_wei": str(dataset.price_wei),
        "parent_listing_id": dataset.parent.listing_id if dataset.parent_id else None,
        "content": {
            "cid": dataset.cid,
            "sha256": dataset.content_sha256,
            "format": profile.file_format,
            "encryption": {"scheme": "AES-256-GCM, chunked", "chunk_size": CHUNK_SIZE},
        },
        "rows": profile.rows,
        "columns": columns,
        "quality_warnings": warnings,
        "created": dataset.created.isoformat(),
    }
    raw = json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    if len(raw) > METADATA_MAX_BYTES:  # very wide tables: the schema without statistics
        document["columns"] = [{"name": c["name"], "type": c["type"]} for c in columns]
        raw = json.dumps(document, sort_keys=True, ensure_ascii=False).encode()
    return raw


class _Sealing:
    """Encrypt the upload, pin the ciphertext and read it back, in a thread of its own: the
    encryption runs while the caller checks the bytes, the pinning (once the caller approves:
    bad input is never sent to the node) while it describes the rows, so the IPFS node works on
    the ciphertext while this process works on the plaintext. The thread touches no database
    (it would hold a connection of its own); it notes the CID in the pin marker the moment the
    node has pinned it."""

    def __init__(self, dataset: Dataset, data_key: bytes):
        self.stage = Stage.ENCRYPTING
        self._path = Path(dataset.upload_path)
        self._marker = _pin_marker(dataset)
        self._decided = threading.Event()
        self._approved = False
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"seal-{dataset.pk}")
        self._future = executor.submit(self._run, data_key)
        executor.shutdown(wait=False)

    def _run(self, data_key: bytes) -> tuple[str, int, str] | None:
        encrypted = self._path.with_name(self._path.name + ".enc")
        with self._path.open("rb") as source, encrypted.open("wb") as target:
            size, sha256 = encrypt_stream(source, target, data_key)
        self._decided.wait()
        if not self._approved:
            return None
        self.stage = Stage.PINNING
        cid = pin_file(encrypted)
        self._marker.write_text(cid)
        self.stage = Stage.VERIFYING
        read_sha256, read_size = cat_sha256(cid)
        if (read_sha256, read_size) != (sha256, size):
            raise IpfsUnavailable(
                f"the IPFS node returned other bytes for {cid} than were pinned "
                f"({read_size} bytes, sha-256 {read_sha256[:12]}…)"
            )
        return cid, size, sha256

    def approve(self) -> None:
        """The bytes passed the check: pin them."""
        self._approved = True
        self._decided.set()

    def result(self, on_wait: Callable[[str], None]) -> tuple[str, int, str]:
        """(CID, ciphertext bytes, ciphertext sha-256); `on_wait(stage)` twice a second until
        then. Raises what the thread raised."""
        while True:
            try:
                return self._future.result(timeout=0.5)
            except FutureTimeout:
                on_wait(self.stage)

    def settle(self) -> None:
        """Give up on this attempt: nothing more is pinned; wait for the thread, whatever its
        outcome (what it pinned already, the pin marker names, for the caller to unpin)."""
        self._decided.set()
        wait([self._future])


def _progress(dataset_id: int, stage: str) -> Callable[[float], None]:
    """A progress callback that writes the dataset row at most twice a second."""
    last = 0.0

    def report(fraction: float) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.5:
            last = now
            _set_stage(dataset_id, Status.PROCESSING, stage, fraction)

    return report


def dataset_process(*, dataset_id: int) -> None:
    """Check the bytes while a second thread encrypts them, then describe the rows while that
    thread pins the ciphertext and reads it back; pin the metadata, then wait for the owner's
    signature. Runs again from the start after an interruption (a retry unpins what the
    previous attempt pinned)."""
    # Imported here: the parsing libraries are the worker's, the web process never needs them.
    from datasets import profiling

    dataset = Dataset.objects.filter(pk=dataset_id).select_related("owner", "parent").first()
    if dataset is None or dataset.status != Status.PROCESSING:
        return
    _unpin_all(dataset)
    if dataset.cid or dataset.metadata_cid:
        Dataset.objects.filter(pk=dataset_id).update(cid="", metadata_cid="")
        dataset.cid = dataset.metadata_cid = ""
    path = Path(dataset.upload_path)
    if not dataset.upload_path or not path.exists():
        dataset_fail(
            dataset_id=dataset_id,
            reason="The uploaded file is no longer on the server: upload it again.",
        )
        return

    _set_stage(dataset_id, Status.PROCESSING, Stage.CHECKING)
    limits = profiling.Limits(
        max_columns=settings.DATASET_MAX_COLUMNS, max_line_bytes=settings.DATASET_MAX_LINE_BYTES
    )
    checking = _progress(dataset_id, Stage.CHECKING)
    data_key = new_data_key()
    sealing = _Sealing(dataset, data_key)
    try:
        # The cheap pass first: bad bytes are refused before anything is sent to the node.
        checked = profiling.check_file(path, limits=limits, on_progress=lambda f: checking(0.1 * f))
        duplicate = _exact_duplicate(dataset, checked.sha256)
        if duplicate is None:
            sealing.approve()
            profile = profiling.describe_file(
                checked, limits=limits, on_progress=lambda f: checking(0.1 + 0.9 * f)
            )
            _set_stage(dataset_id, Status.PROCESSING, Stage.COMPARING)
            duplicate = _exact_duplicate(dataset, profile.file_sha256, profile.rows_sha256)
    except profiling.InputRejected as exc:
        sealing.settle()
        dataset_reject(dataset_id=dataset_id, reason=exc.message)
        return
    except BaseException:
        sealing.settle()  # the retry, or the failure handler, unpins what it pinned
        raise
    if duplicate is not None:
        sealing.settle()
        dataset_reject(dataset_id=dataset_id, reason=_duplicate_reason(dataset, duplicate))
        return
    warnings = _near_duplicates(dataset, profile) + profile.warnings
    columns = _withhold_values(profile.columns, warnings)

    _set_stage(dataset_id, Status.PROCESSING, sealing.stage)
    cid, encrypted_size, content_sha256 = sealing.result(
        on_wait=lambda stage: _set_stage(dataset_id, Status.PROCESSING, stage)
    )
    Dataset.objects.filter(pk=dataset_id).update(cid=cid)
    dataset.cid, dataset.content_sha256 = cid, content_sha256

    metadata = _metadata_document(dataset, profile, columns, warnings)
    metadata_path = path.with_name(path.name + ".meta.json")
    metadata_path.write_bytes(metadata)
    metadata_sha256 = hashlib.sha256(metadata).hexdigest()
    metadata_cid = pin_file(metadata_path, raw_single_block=True)
    Dataset.objects.filter(pk=dataset_id).update(metadata_cid=metadata_cid)
    dataset.metadata_cid = metadata_cid
    if metadata_cid != raw_cid_for_sha256(metadata_sha256):
        raise IpfsError(f"the metadata was stored as {metadata_cid}, not as one raw block")

    wrapped = wrap_data_key(data_key, settings.MASTER_KEY, context=dataset_key_context(dataset_id))
    try:
        with transaction.atomic():
            moved = Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).update(
                status=Status.AWAITING_SIGNATURE,
                stage=Stage.SIGNING,
                progress=100,
                status_message="",
                file_format=profile.file_format,
                rows=profile.rows,
                column_count=len(columns),
                columns=columns,
                quality_warnings=warnings,
                file_sha256=profile.file_sha256,
                rows_sha256=profile.rows_sha256,
                unique_rows=profile.unique_rows,
                minhash=profile.minhash,
                wrapped_data_key=wrapped,
                content_sha256=content_sha256,
                encrypted_size=encrypted_size,
                metadata_cid=metadata_cid,
                metadata_sha256=metadata_sha256,
                sign_deadline=int(time.time()) + settings.DATASET_SIGNATURE_TTL_SECONDS,
                search_text=_search_text(
                    title=dataset.title,
                    description=dataset.description,
                    tags=dataset.tags,
                    columns=columns,
                ),
                upload_path="",
            )
            if moved:
                MinHashBand.objects.bulk_create(
                    MinHashBand(dataset_id=dataset_id, band=band, key=key)
                    for band, key in enumerate(profiling.minhash_band_keys(profile.minhash))
                )
    except IntegrityError:
        # The same data reached `awaiting_signature` in another upload meanwhile.
        duplicate = _exact_duplicate(dataset, profile.file_sha256, profile.rows_sha256)
        dataset_reject(
            dataset_id=dataset_id,
            reason=_duplicate_reason(dataset, duplicate)
            if duplicate
            else "The same data is already listed.",
        )
        return
    _delete_files(dataset)
    if not moved:  # moved on meanwhile (e.g. failed by a time limit): nothing of ours stays
        current = Dataset.objects.get(pk=dataset_id)
        if current.status != Status.AWAITING_SIGNATURE:
            _unpin_all(dataset)


def _duplicate_reason(dataset: Dataset, duplicate: Dataset) -> str:
    own = duplicate.owner_id == dataset.owner_id
    return (
        f"The same data is already listed as “{duplicate.title}” (dataset #{duplicate.pk}"
        f"{', yours' if own else ''}). An exact duplicate cannot be listed again."
    )


def dataset_key_context(dataset_id: int) -> bytes:
    """What a dataset's wrapped data key is bound to (the training worker unwraps with it)."""
    return f"dataset:{dataset_id}".encode()


# --- signing -----------------------------------------------------------------------------------


def listing_terms(dataset: Dataset) -> ListingTerms:
    return ListingTerms(
        owner=dataset.owner.address,
        cid=dataset.cid,
        content_hash=bytes.fromhex(dataset.content_sha256),
        metadata_hash=bytes.fromhex(dataset.metadata_sha256),
        license=dataset.license,
        price_wei=int(dataset.price_wei),
        parent_id=dataset.parent.listing_id if dataset.parent_id else 0,
        deadline=int(dataset.sign_deadline or 0),
    )


def dataset_signing_refresh(*, dataset: Dataset) -> Dataset:
    """A listing waiting for its signature gets a fresh deadline when the old one is near."""
    margin = 3600
    if dataset.status == Status.AWAITING_SIGNATURE and (dataset.sign_deadline or 0) < (
        time.time() + margin
    ):
        deadline = int(time.time()) + settings.DATASET_SIGNATURE_TTL_SECONDS
        Dataset.objects.filter(pk=dataset.pk, status=Status.AWAITING_SIGNATURE).update(
            sign_deadline=deadline
        )
        dataset.sign_deadline = deadline
    return dataset


def _recover_listing_signer(registry: DatasetRegistry, terms: ListingTerms, nonce: int, sig: str):
    typed = registry.listing_typed_data(terms, nonce)
    return Account.recover_message(encode_typed_data(full_message=typed), signature=sig)


def dataset_signature_submit(
    *, dataset_id: int, user: User, signature: str, enqueue: bool = True
) -> Dataset:
    """Check the owner's EIP-712 signature here (nothing is sent when it is wrong), then hand
    the listing to the worker that relays it."""
    with transaction.atomic():
        dataset = (
            Dataset.objects.select_for_update(of=("self",))
            .filter(pk=dataset_id)
            .select_related("owner", "parent")
            .first()
        )
        if dataset is None or (dataset.owner_id != user.pk and dataset.status != Status.LISTED):
            raise _refuse("No such dataset.", "not_found", http.HTTP_404_NOT_FOUND)
        if dataset.owner_id != user.pk:
            raise _refuse(
                "Only the dataset's owner can sign its listing.",
                "not_owner",
                http.HTTP_403_FORBIDDEN,
            )
        if dataset.status in (Status.REGISTERING, Status.LISTED):
            raise _refuse(
                "This listing is already signed"
                + (
                    " and listed."
                    if dataset.status == Status.LISTED
                    else ": it is being registered."
                ),
                "already_signed",
                http.HTTP_409_CONFLICT,
            )
        if dataset.status != Status.AWAITING_SIGNATURE:
            raise _refuse(
                f"This dataset is {dataset.get_status_display().lower()}: there is nothing to "
                "sign.",
                "not_awaiting_signature",
                http.HTTP_409_CONFLICT,
            )
        if not isinstance(signature, str) or not SIGNATURE_PATTERN.match(signature):
            raise _refuse(
                "The signature is malformed: expected 0x and 130 hex digits.", "signature_malformed"
            )
        if (dataset.sign_deadline or 0) <= time.time():
            raise _refuse(
                "The listing request expired before it was signed: reload the page and sign the "
                "new one.",
                "signature_expired",
            )
        try:
            registry = DatasetRegistry.deployed()
            terms = listing_terms(dataset)
            nonce = registry.nonce(terms.owner)
            try:
                signer = _recover_listing_signer(registry, terms, nonce, signature)
            except Exception:
                raise _refuse(
                    "The signature is malformed: it recovers no key.", "signature_malformed"
                ) from None
            owner = Web3.to_checksum_address(dataset.owner.address)
            if signer != owner:
                for earlier in range(max(0, nonce - 3), nonce):
                    if _recover_listing_signer(registry, terms, earlier, signature) == owner:
                        raise _refuse(
                            "This signature was made for an earlier state of your account (you "
                            "signed another listing since): reload the page and sign again.",
                            "stale_nonce",
                        )
                raise _refuse(
                    f"The signature was made by {signer}, not by the owner {owner}: sign with the "
                    "owner's wallet. Nothing was sent to the chain.",
                    "wrong_signer",
                )
        except (ChainUnavailable, ChainMisconfigured) as exc:
            raise _refuse(
                f"The chain cannot be reached to check the signature ({exc}); try again shortly.",
                "chain_unavailable",
                http.HTTP_503_SERVICE_UNAVAILABLE,
            ) from None
        Dataset.objects.filter(pk=dataset.pk, status=Status.AWAITING_SIGNATURE).update(
            status=Status.REGISTERING,
            stage=Stage.RELAYING,
            progress=0,
            signature=signature,
            status_message="",
        )
        if enqueue:
            from datasets.tasks import register_dataset

            transaction.on_commit(lambda: register_dataset.delay(dataset.pk))
    dataset.refresh_from_db()
    return dataset


# --- registering -------------------------------------------------------------------------------


def _listing_intent_base(dataset: Dataset) -> str:
    return f"list:dataset:{dataset.pk}"


def listing_intent(dataset: Dataset) -> str:
    """One transaction per signature: a re-signed listing (after a refused one) is a new intent."""
    base = _listing_intent_base(dataset)
    return base if dataset.signature_round <= 1 else f"{base}:round-{dataset.signature_round}"


def dataset_register(*, dataset_id: int) -> None:
    """Relay the signed listing through the operator; `listed` with its id, tx and block."""
    dataset = Dataset.objects.filter(pk=dataset_id).select_related("owner", "parent").first()
    if dataset is None or dataset.status != Status.REGISTERING:
        return
    registry = DatasetRegistry.deployed()
    try:
        outcome = registry.relay_listing(
            intent=listing_intent(dataset),
            terms=listing_terms(dataset),
            signature=bytes.fromhex(dataset.signature.removeprefix("0x")),
        )
    except (ContractCustomError, ContractLogicError) as exc:
        name, _ = decode_revert(exc)
        message = REVERT_MESSAGES.get(name, f"The registry refused the listing ({name}).")
        if name in RESIGN_ERRORS:
            _ask_to_sign_again(dataset, message)
        else:
            dataset_fail(dataset_id=dataset_id, reason=message)
        return
    if not outcome.succeeded:
        _ask_to_sign_again(
            dataset, f"The listing transaction {outcome.tx_hash} was reverted by the registry."
        )
        return
    listed = outcome.event("DatasetListed")
    dataset_listing_record(
        dataset_id=dataset_id,
        listing_id=listed.args["listingId"],
        tx_hash=outcome.tx_hash,
        block_number=outcome.block_number,
    )


def _ask_to_sign_again(dataset: Dataset, reason: str) -> None:
    Dataset.objects.filter(pk=dataset.pk, status=Status.REGISTERING).update(
        status=Status.AWAITING_SIGNATURE,
        stage=Stage.SIGNING,
        signature="",
        signature_round=F("signature_round") + 1,
        sign_deadline=int(time.time()) + settings.DATASET_SIGNATURE_TTL_SECONDS,
        status_message=f"{reason} Sign the listing again.",
    )


def dataset_listing_record(
    *, dataset_id: int, listing_id: int, tx_hash: str, block_number: int
) -> bool:
    moved = Dataset.objects.filter(
        pk=dataset_id,
        status__in=[Status.AWAITING_SIGNATURE, Status.REGISTERING, Status.FAILED],
    ).update(
        status=Status.LISTED,
        stage=Stage.DONE,
        progress=100,
        status_message="",
        listing_id=listing_id,
        tx_hash=tx_hash,
        block_number=block_number,
        listed_at=timezone.now(),
    )
    return bool(moved)


def dataset_listed_event_record(w3: Web3, event: ChainEvent) -> None:
    """Indexer handler for DatasetListed: confirms our listing (and records it as listed if the
    worker never did, e.g. it stopped after the transaction was mined). Repeats change nothing."""
    args = event.args
    candidates = Dataset.objects.filter(
        cid=args["cid"], content_sha256=str(args["contentHash"]).removeprefix("0x")
    ).select_related("owner")
    for dataset in candidates:
        if Web3.to_checksum_address(dataset.owner.address) != Web3.to_checksum_address(
            args["owner"]
        ):
            continue
        dataset_listing_record(
            dataset_id=dataset.pk,
            listing_id=args["listingId"],
            tx_hash=event.tx_hash,
            block_number=event.block_number,
        )
        Dataset.objects.filter(
            pk=dataset.pk, listing_id=args["listingId"], confirmed_block__isnull=True
        ).update(confirmed_block=event.block_number)
