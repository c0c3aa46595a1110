r"""Dataset writes, the listing's state machine:

    processing -> awaiting_signature -> registering -> listed
              \-> rejected (bad input)  \-> failed (an outage outlasted the retries)

The upload's work (check, seal, describe, compare) is in `datasets.processing`; this module moves
the status, always with a guarded update, so a step delivered twice does nothing the second
time."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_typed_data
from rest_framework import status as http
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from chain.client import decode_revert
from chain.events import ChainEvent, block_time
from chain.models import ChainTransaction
from chain.wrappers import DatasetRegistry, ListingTerms
from datasets import processing, uploads
from datasets.models import (
    LICENSES,
    MAX_PRICE_WEI,
    Dataset,
    MinHashBand,
    RowSignature,
    RowSignatureSample,
    dp_epsilon_refusal,
)
from datasets.selectors import description_excerpt, listing_terms
from datasets.uploads import UploadOnDisk
from marketplace.errors import ApplicationError, refuse
from marketplace.ipfs import IpfsError, IpfsUnavailable
from marketplace.models import User

logger = logging.getLogger(__name__)

Status, Stage = Dataset.Status, Dataset.Stage
ACCEPTED_EXTENSIONS = {".csv", ".tsv", ".txt", ".parquet", ".pq"}
SIGNATURE_PATTERN = re.compile(r"^0x[0-9a-fA-F]{130}$")
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9 ._+-]{0,31}$")
MAX_TAGS = 10
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
MAX_INTERRUPTED_ATTEMPTS = 2  # the first delivery and one retry
UPLOAD_GONE_REASON = "The uploaded file is no longer on the server: upload it again."
INTERRUPTED_REASON = (
    "Processing this file stopped the worker twice (most likely it needs more memory than a "
    "worker has), so it is not tried again. Split it into smaller files and list those."
)


# --- create ------------------------------------------------------------------------------------


def parse_price_wei(value) -> int:
    """An integer number of wei from a form or JSON value; no floats, no exponents."""
    text = str(value).strip() if value is not None else ""
    if isinstance(value, bool) or not re.fullmatch(r"\d+", text):
        if re.fullmatch(r"-\s*\d+(\.\d+)?", text):
            raise refuse("The price cannot be negative.", "bad_price")
        raise refuse(
            f"The price must be a whole number of wei (e.g. 10000000000000000 for 0.01 ETH), "
            f"not {text[:40]!r}.",
            "bad_price",
        )
    price = int(text)
    if price > MAX_PRICE_WEI:
        raise refuse("The price is above what the registry can hold (2^88 - 1 wei).", "bad_price")
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
            raise refuse(
                f"The tag {tag[:40]!r} is not valid: up to 32 letters, digits, spaces or . _ + -",
                "bad_tag",
            )
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise refuse(f"At most {MAX_TAGS} tags.", "bad_tag")
    return tags


def _search_text(*, title: str, description: str, tags: list[str], columns: list[dict]) -> str:
    names = " ".join(c["name"] for c in columns)
    return "\n".join([title, description, " ".join(tags), names]).lower()


MAX_OPT_IN_COLUMNS = 100


def parse_column_names(value) -> list[str]:
    """Column names, comma-separated (or a list), each once, in the order given."""
    if value in (None, ""):
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    names = list(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
    if len(names) > MAX_OPT_IN_COLUMNS or any(len(n) > 200 for n in names):
        raise refuse(
            f"Name at most {MAX_OPT_IN_COLUMNS} columns, each up to 200 characters.",
            "bad_feature_opt_in",
        )
    return names


def _check_upload_quota(*, owner: User, size: int) -> None:
    """Every upload of the last 24 hours counts, whatever became of it (its work was done)."""
    window = timedelta(days=1)
    now = timezone.now()
    recent = Dataset.objects.filter(owner=owner, created__gt=now - window)
    used = recent.aggregate(total=Sum("size_bytes"))["total"] or 0
    quota = settings.DATASET_UPLOAD_QUOTA_BYTES_PER_DAY
    if used + size <= quota:
        return
    oldest = recent.order_by("created").values_list("created", flat=True).first() or now
    wait = max(1, int((oldest + window - now).total_seconds()) + 1)
    raise ApplicationError(
        f"This upload would take you past your {filesizeformat(quota)} a day: you uploaded "
        f"{filesizeformat(used)} in the last 24 hours. Try again in about "
        f"{max(1, round(wait / 3600))} hour(s), or upload a smaller file.",
        {"code": "upload_quota", "retry_after": wait},
        status_code=http.HTTP_429_TOO_MANY_REQUESTS,
    )


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
    feature_opt_in=None,
    dp_epsilon_max: float | None = None,
    enqueue: bool = True,
) -> Dataset:
    """A new listing in `processing`, its (sealed) file staged on the IPFS node for whichever
    worker is then asked to describe, encrypt and pin it. `upload` is an upload of this request
    or a file of ours. Everything is checked before the file is staged; if the row cannot be
    written, the staged file is unpinned again."""
    if not owner.address:
        raise refuse(
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
        raise refuse(
            f"Upload a CSV or Parquet file (.csv or .parquet), not "
            f"{extension or 'a file without an extension'}.{hint}",
            "bad_file_type",
        )
    size = upload.size if isinstance(upload, UploadOnDisk) else upload.stat().st_size
    if size == 0:
        raise refuse("The file is empty.", "empty_file")
    _check_upload_quota(owner=owner, size=size)
    valid_licenses = [code for code, _ in LICENSES]
    if license not in valid_licenses:
        raise refuse(
            f"Unknown license {str(license)[:40]!r}: choose one of {', '.join(valid_licenses)}.",
            "bad_license",
        )
    price = parse_price_wei(price_wei)
    if dp_epsilon_max is not None and (reason := dp_epsilon_refusal(dp_epsilon_max)):
        raise refuse(f"{reason} (the differential privacy a run must use).", "bad_dp_epsilon")
    tag_list = parse_tags(tags)
    opted_in = parse_column_names(feature_opt_in)
    title = " ".join((title or "").split())
    if not title:
        raise refuse("Give the dataset a title.", "no_title")
    parent = None
    if parent_id not in (None, ""):
        parent = Dataset.objects.filter(pk=parent_id).first()
        if parent is None:
            raise refuse(
                f"There is no dataset #{parent_id} to be the parent.",
                "bad_parent",
                http.HTTP_404_NOT_FOUND,
            )
        if parent.owner_id != owner.pk:
            raise refuse(
                f"Dataset #{parent.pk} belongs to another owner: a new version can only follow "
                "one of your own listings.",
                "parent_not_owned",
                http.HTTP_403_FORBIDDEN,
            )
        if parent.status != Status.LISTED:
            raise refuse(
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
        feature_opt_in=opted_in,
        price_wei=Decimal(price),
        dp_epsilon_max=dp_epsilon_max,
        excerpt=description_excerpt(description or ""),
        original_filename=name[:255],
        size_bytes=size,
        search_text=_search_text(
            title=title, description=description or "", tags=tag_list, columns=[]
        ),
        tag_index="".join(f"|{t}" for t in tag_list) + "|",
    )
    dataset.full_clean()
    try:
        dataset.upload_cid = uploads.stage(upload)
    except IpfsError as exc:
        raise IpfsUnavailable(f"the IPFS node refused the upload: {exc}") from exc
    try:
        with transaction.atomic():
            dataset.save()
            if enqueue:
                transaction.on_commit(lambda: _enqueue_processing(dataset))
    except BaseException:
        processing.unpin_upload(dataset)
        raise
    return dataset


def _enqueue_processing(dataset: Dataset) -> None:
    """Hand the upload to a worker; if the broker refuses it, nothing of the upload stays."""
    from datasets.tasks import process_dataset

    try:
        process_dataset.delay(dataset.pk)
    except Exception:
        Dataset.objects.filter(pk=dataset.pk, status=Status.PROCESSING).delete()
        processing.unpin_upload(dataset)
        raise


# --- the pipeline: check, seal, describe, compare (datasets.processing does the work) ---------


def _set_stage(dataset_id: int, status: str, stage: str, fraction: float = 0.0) -> None:
    Dataset.objects.filter(pk=dataset_id, status=status).update(
        stage=stage, progress=max(0, min(100, int(fraction * 100)))
    )


def dataset_reject(*, dataset_id: int, reason: str) -> bool:
    """Bad input: `rejected` with the reason; nothing stays pinned or on disk."""
    dataset = Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).first()
    if dataset is None:
        return False
    processing.unpin_listing(dataset)
    processing.unpin_upload(dataset)
    moved = Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).update(
        status=Status.REJECTED,
        stage=Stage.DONE,
        progress=100,
        status_message=reason,
        cid="",
        metadata_cid="",
        upload_cid="",
    )
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
    try:
        if not keep_pins:
            processing.unpin_listing(dataset)
        processing.unpin_upload(dataset)
    except (IpfsUnavailable, IpfsError) as exc:
        logger.warning("dataset %s: could not unpin after failure: %s", dataset_id, exc)
    moved = Dataset.objects.filter(pk=dataset_id, status=dataset.status).update(
        status=Status.FAILED,
        stage=Stage.DONE,
        status_message=reason,
        **({} if keep_pins else {"cid": "", "metadata_cid": ""}),
        upload_cid="",
    )
    return bool(moved)


def dataset_process(*, dataset_id: int) -> None:
    """processing -> awaiting_signature (or rejected): the upload is checked, sealed, described
    and compared by `processing.listing_prepare`. Runs again from the start after an
    interruption (a retry first unpins what the previous attempt pinned); a file whose
    processing stopped the worker twice is rejected instead of being tried again."""
    dataset = Dataset.objects.filter(pk=dataset_id).select_related("owner", "parent").first()
    if dataset is None or dataset.status != Status.PROCESSING:
        return
    # Raised before the work and cleared after it, however it ends: only deliveries whose worker
    # died (e.g. killed for its memory) leave it raised, and the broker redelivers those.
    Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).update(
        interrupted_attempts=F("interrupted_attempts") + 1
    )
    if dataset.interrupted_attempts >= MAX_INTERRUPTED_ATTEMPTS:
        dataset_reject(dataset_id=dataset_id, reason=INTERRUPTED_REASON)
        return
    try:
        _dataset_process(dataset)
    finally:
        Dataset.objects.filter(pk=dataset_id).update(interrupted_attempts=0)


def _dataset_process(dataset: Dataset) -> None:
    # Imported here: the parsing libraries are the worker's, the web process never needs them.
    from datasets.reader import InputRejected

    dataset_id = dataset.pk
    processing.unpin_listing(dataset)  # what an interrupted attempt pinned
    if dataset.cid or dataset.metadata_cid:
        Dataset.objects.filter(pk=dataset_id).update(cid="", metadata_cid="")
        dataset.cid = dataset.metadata_cid = ""
    try:
        if not dataset.upload_cid:
            raise processing.UploadGone("no upload was staged")
        prepared = processing.listing_prepare(
            dataset,
            on_stage=lambda stage, fraction: _set_stage(
                dataset_id, Status.PROCESSING, stage, fraction
            ),
        )
    except processing.UploadGone as exc:
        logger.warning("dataset %s: the staged upload is gone: %s", dataset_id, exc)
        dataset_fail(dataset_id=dataset_id, reason=UPLOAD_GONE_REASON)
        return
    except InputRejected as exc:
        dataset_reject(dataset_id=dataset_id, reason=exc.message)
        return
    # The listing's own ciphertext is pinned: the staged upload is not needed any more.
    processing.unpin_upload(dataset)
    profile, columns = prepared.profile, prepared.columns
    try:
        with transaction.atomic():
            moved = Dataset.objects.filter(pk=dataset_id, status=Status.PROCESSING).update(
                status=Status.AWAITING_SIGNATURE,
                stage=Stage.SIGNING,
                progress=100,
                status_message="",
                file_format=profile.file_format.kind,
                read_format=profile.file_format.as_dict(),
                rows=profile.rows,
                column_count=len(columns),
                columns=columns,
                quality_warnings=prepared.warnings,
                file_sha256=profile.file_sha256,
                rows_sha256=profile.rows_sha256,
                unique_rows=profile.unique_rows,
                minhash=profile.minhash,
                wrapped_data_key=prepared.wrapped_data_key,
                cid=prepared.cid,
                content_sha256=prepared.content_sha256,
                encrypted_size=prepared.encrypted_size,
                metadata_cid=prepared.metadata_cid,
                metadata_sha256=prepared.metadata_sha256,
                sign_deadline=int(time.time()) + settings.DATASET_SIGNATURE_TTL_SECONDS,
                search_text=_search_text(
                    title=dataset.title,
                    description=dataset.description,
                    tags=dataset.tags,
                    columns=columns,
                ),
                upload_cid="",
            )
            if moved:
                MinHashBand.objects.bulk_create(processing.minhash_bands(dataset_id, profile))
                processing.row_signatures_save(dataset_id, profile.row_signatures)
    except IntegrityError:
        # The same data reached `awaiting_signature` in another upload meanwhile.
        duplicate = processing.exact_duplicate(dataset, profile.file_sha256, profile.rows_sha256)
        dataset_reject(
            dataset_id=dataset_id,
            reason=processing.duplicate_reason(dataset, duplicate)
            if duplicate
            else "The same data is already listed.",
        )
        return
    if not moved:  # moved on meanwhile (e.g. failed by a time limit): nothing of ours stays
        current = Dataset.objects.get(pk=dataset_id)
        if current.status != Status.AWAITING_SIGNATURE:
            processing.unpin_listing(dataset)


def dataset_row_signatures_index(*, dataset_id: int, workdir: Path) -> bool:
    """(Re)compute the row signatures the copy check looks up, for a listing made before the
    check existed: its file is fetched from IPFS, decrypted and read as its listing read it, in
    the calling (worker or operator) process only. False when it is no active listing."""
    from datasets.selectors import listed_plaintext

    dataset = Dataset.objects.filter(pk=dataset_id, status__in=Dataset.ACTIVE).first()
    if dataset is None or not dataset.cid:
        return False
    decrypted = listed_plaintext(
        dataset=dataset, workdir=workdir, expected_sha256=dataset.content_sha256
    )
    with decrypted as plain:
        sample = processing.row_signatures_read(plain)
    with transaction.atomic():
        RowSignature.objects.filter(dataset_id=dataset_id).delete()
        RowSignatureSample.objects.filter(dataset_id=dataset_id).delete()
        processing.row_signatures_save(dataset_id, sample)
    return True


# --- signing -----------------------------------------------------------------------------------


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
            raise refuse("No such dataset.", "not_found", http.HTTP_404_NOT_FOUND)
        if dataset.owner_id != user.pk:
            raise refuse(
                "Only the dataset's owner can sign its listing.",
                "not_owner",
                http.HTTP_403_FORBIDDEN,
            )
        if dataset.status in (Status.REGISTERING, Status.LISTED):
            raise refuse(
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
            raise refuse(
                f"This dataset is {dataset.get_status_display().lower()}: there is nothing to "
                "sign.",
                "not_awaiting_signature",
                http.HTTP_409_CONFLICT,
            )
        if not isinstance(signature, str) or not SIGNATURE_PATTERN.match(signature):
            raise refuse(
                "The signature is malformed: expected 0x and 130 hex digits.", "signature_malformed"
            )
        if (dataset.sign_deadline or 0) <= time.time():
            raise refuse(
                "The listing request expired before it was signed: reload the page and sign the "
                "new one.",
                "signature_expired",
            )
        # An unreachable chain raises ChainUnavailable: the API answers 503 (marketplace.errors).
        registry = DatasetRegistry.deployed()
        terms = listing_terms(dataset)
        nonce = registry.nonce(terms.owner)
        try:
            signer = _recover_listing_signer(registry, terms, nonce, signature)
        except Exception:
            raise refuse(
                "The signature is malformed: it recovers no key.", "signature_malformed"
            ) from None
        owner = Web3.to_checksum_address(dataset.owner.address)
        if signer != owner:
            for earlier in range(max(0, nonce - 3), nonce):
                if _recover_listing_signer(registry, terms, earlier, signature) == owner:
                    raise refuse(
                        "This signature was made for an earlier state of your account (you "
                        "signed another listing since): reload the page and sign again.",
                        "stale_nonce",
                    )
            raise refuse(
                f"The signature was made by {signer}, not by the owner {owner}: sign with the "
                "owner's wallet. Nothing was sent to the chain.",
                "wrong_signer",
            )
        Dataset.objects.filter(pk=dataset.pk, status=Status.AWAITING_SIGNATURE).update(
            status=Status.REGISTERING,
            stage=Stage.RELAYING,
            progress=0,
            signature=signature,
            status_message="",
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_registration(dataset.pk))
    dataset.refresh_from_db()
    return dataset


def _enqueue_registration(dataset_id: int) -> None:
    """Hand the signed listing to a worker; if the broker refuses it, the listing waits for its
    signature again (nothing was sent to the chain)."""
    from datasets.tasks import register_dataset

    try:
        register_dataset.delay(dataset_id)
    except Exception:
        Dataset.objects.filter(pk=dataset_id, status=Status.REGISTERING).update(
            status=Status.AWAITING_SIGNATURE, stage=Stage.SIGNING, signature=""
        )
        raise


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
        listed_at=block_time(registry.w3, outcome.block_number),
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
    *, dataset_id: int, listing_id: int, tx_hash: str, block_number: int, listed_at: datetime
) -> bool:
    """-> listed; `listed_at` is the time of the listing's block (the chain's, so a database
    rebuilt from the chain says the same)."""
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
        listed_at=listed_at,
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
            listed_at=block_time(w3, event.block_number),
        )
        Dataset.objects.filter(
            pk=dataset.pk, listing_id=args["listingId"], confirmed_block__isnull=True
        ).update(confirmed_block=event.block_number)


def dataset_confirmations_forget(w3: Web3, fork_block: int) -> None:
    """Indexer reorganisation handler: a listing seen in a block above `fork_block` is no longer
    confirmed; reading those blocks again confirms the listings still on the chain."""
    Dataset.objects.filter(confirmed_block__gt=fork_block).update(confirmed_block=None)
