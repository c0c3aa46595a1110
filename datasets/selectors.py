"""Dataset reads used by the API, the pages and the operator command: browsing, detail, the
typed data an owner signs, and verification against IPFS and the chain."""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import markdown as markdown_lib
import nh3
from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import BooleanField, Max, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.html import strip_tags
from rest_framework import status as http
from web3 import Web3

from chain.wrappers import DatasetRegistry, ListingTerms
from datasets.listed import ContentMismatch  # noqa: F401 - raised by the reads below
from datasets.models import LICENSES, Dataset
from marketplace.did import did_for
from marketplace.errors import ApplicationError, NodeUnavailable
from marketplace.ipfs import IpfsError, cat_sha256, raw_cid_for_sha256
from marketplace.models import User

Status = Dataset.Status
LICENSE_NAMES = dict(LICENSES)
# What a list needs; the statistics and keys stay in the database.
SUMMARY_FIELDS = (
    "id", "title", "excerpt", "license", "tags", "price_wei", "status", "stage", "progress",
    "status_message", "rows", "column_count", "cid", "listing_id", "created", "listed_at",
    "owner__id", "owner__address",
)  # fmt: skip
MARKDOWN_TAGS = {
    "p", "br", "hr", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to show: only formatting tags, links without scripts."""
    html = markdown_lib.markdown(text or "", extensions=["tables", "fenced_code"])
    return nh3.clean(
        html,
        tags=MARKDOWN_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def owner_did(address: str | None) -> str | None:
    return did_for(address, settings.CHAIN_ID) if address else None


# --- browsing ------------------------------------------------------------------------------


ORDERINGS = {  # the browse page's sort menu, in its order
    "-created": "Newest first",
    "created": "Oldest first",
    "price_wei": "Price: low to high",
    "-price_wei": "Price: high to low",
    "-rows": "Most rows",
    "rows": "Fewest rows",
}
MAX_SEARCH_WORDS = 10


@dataclass(frozen=True)
class BrowseQuery:
    """What a visitor asks the catalogue for (the query parameters of the list API and the
    browse page), checked."""

    search: tuple[str, ...] = ()  # lower-cased words, all must match (see `_searched`)
    license: str = ""
    tag: str = ""
    owner: str = ""  # an address, any case
    min_rows: int | None = None
    max_price_wei: int | None = None
    ordering: str = "-created"


def _refuse_filter(name: str, reason: str) -> ApplicationError:
    return ApplicationError(
        f"The {name.replace('_', ' ')} filter is not valid: {reason}",
        {"code": "bad_filter", "fields": {name: [reason]}},
    )


def _whole_number(params, name: str, *, max_digits: int) -> int | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > max_digits:
        raise _refuse_filter(
            name, f"expected a whole number of at most {max_digits} digits, not {value[:40]!r}."
        )
    return int(value)


def page_number(value: str | None, *, default: int) -> int | None:
    """A page or page-size parameter: `default` when absent, None when not a whole number."""
    if not value:
        return default
    return int(value) if value.isdigit() and len(value) < 10 else None


def browse_query(params) -> BrowseQuery:
    """The checked query, or a 400 naming the parameter that is not valid."""
    for name, limit in (("search", 200), ("tag", 40), ("owner", 80)):
        if len(params.get(name) or "") > limit:
            raise _refuse_filter(name, f"at most {limit} characters.")
        if "\x00" in (params.get(name) or ""):  # the database cannot compare it
            raise _refuse_filter(name, "it holds a NUL character.")
    license = (params.get("license") or "").strip()
    if license and license not in LICENSE_NAMES:
        raise _refuse_filter(
            "license", f"{license[:40]!r} is not one of {', '.join(LICENSE_NAMES)}."
        )
    ordering = (params.get("ordering") or "").strip() or "-created"
    if ordering not in ORDERINGS:
        raise _refuse_filter("ordering", f"{ordering[:40]!r} is not one of {', '.join(ORDERINGS)}.")
    owner = (params.get("owner") or "").strip()
    if owner.lower().startswith("did:ethr:"):
        owner = owner.rsplit(":", 1)[-1]
    return BrowseQuery(
        search=search_words(params.get("search") or ""),
        license=license,
        tag=" ".join((params.get("tag") or "").strip().lower().split()),
        owner=owner,
        min_rows=_whole_number(params, "min_rows", max_digits=18),
        max_price_wei=_whole_number(params, "max_price_wei", max_digits=78),
        ordering=ordering,
    )


def search_words(text: str) -> tuple[str, ...]:
    """The words of a search, lower-cased: split on spaces; one without a letter or a digit
    (`&`, `--`) says nothing and is left out."""
    words = [w for w in text.lower().split() if any(c.isalnum() for c in w)]
    return tuple(words[:MAX_SEARCH_WORDS])


def dataset_list(*, params) -> QuerySet[Dataset]:
    """Listed datasets, filtered, searched and ordered by the query parameters (400 with the
    reason for one that is not valid)."""
    return _filtered(browse_query(params))


def _filtered(query: BrowseQuery) -> QuerySet[Dataset]:
    queryset = (
        Dataset.objects.filter(status=Status.LISTED).select_related("owner").only(*SUMMARY_FIELDS)
    )
    queryset = _searched(queryset, query.search)
    if query.license:
        queryset = queryset.filter(license=query.license)
    if query.tag:
        queryset = queryset.filter(tag_index__contains=f"|{query.tag}|")
    if query.owner:
        queryset = queryset.filter(owner__address__iexact=query.owner)
    if query.min_rows is not None:
        queryset = queryset.filter(rows__gte=query.min_rows)
    if query.max_price_wei is not None:
        queryset = queryset.filter(price_wei__lte=query.max_price_wei)
    # Ties broken by id in the same direction: one index serves both directions.
    tie = "-id" if query.ordering.startswith("-") else "id"
    return queryset.order_by(query.ordering, tie)


def _searched(queryset: QuerySet[Dataset], words: tuple[str, ...]) -> QuerySet[Dataset]:
    """Listings whose title, description, tags or column names hold every word.

    On PostgreSQL a word matches the start of a word of the listing, as the text-search parser
    splits both ('simple' configuration: any case, no stemming): "heart" finds "Heart" and
    "heartbeat", not "sweetheart"; "sepal_len" finds the column "sepal_length" and "drop-of"
    finds "drop-off" (the parts of a word, in order). The stored tsvector and its GIN index
    (migration 0012) answer it. Each word is quoted for to_tsquery, so `&`, `|`, `!`, `:`, `(`
    or a quote in it are text, never operators, and it travels as a parameter.
    On SQLite (development) a word matches anywhere in that text, as a substring."""
    if not words:
        return queryset
    if connection.vendor != "postgresql":
        for word in words:
            queryset = queryset.filter(search_text__contains=word)
        return queryset
    tsquery = " & ".join(
        "'" + word.replace("\\", "\\\\").replace("'", "''") + "':*" for word in words
    )
    match = RawSQL(
        f"{connection.ops.quote_name(Dataset._meta.db_table)}.search_vector "
        "@@ to_tsquery('simple'::regconfig, %s)",
        (tsquery,),
        output_field=BooleanField(),
    )
    return queryset.filter(match)


BROWSE_CACHE_SECONDS = 30  # bounds how long an operator's deletion may still show
MAX_PAGE_SIZE = 100
# Up to this many matches by the planner's estimate, a page counts them; past it the count is
# the estimate (counting a broad search on a large catalogue would read every match).
EXACT_COUNT_UP_TO = 1_000


@dataclass(frozen=True)
class BrowsePage:
    count: int
    number: int
    num_pages: int
    results: list[dict]
    key: str = ""  # the cache key: a catalogue version, a query and a page
    count_exact: bool = True  # False: `count` is PostgreSQL's estimate, rounded

    @property
    def previous_number(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.number < self.num_pages else None

    @property
    def count_text(self) -> str:
        """The count as a page shows it: 1,234; or about 12,000 for an estimate."""
        return f"{self.count:,}" if self.count_exact else f"about {self.count:,}"


def catalogue_version() -> str:
    """Changes with every write to a dataset (each stamps `updated`; an index answers)."""
    latest = Dataset.objects.aggregate(latest=Max("updated"))["latest"]
    return latest.isoformat() if latest else "empty"


def browse_page(*, params, number: int, page_size: int) -> BrowsePage:
    """One page of `dataset_list`, as summaries. Pages are cached per catalogue version (so
    a change shows at once) and query: a popular page costs one indexed read, not a count,
    a query and the summaries. A page past the end is the last page.

    The number of SQL queries does not depend on the page size: the catalogue version, then
    (PostgreSQL) the planner's estimate of the matches, then the count when the estimate is
    small, and the page with its owners (one join)."""
    query = browse_query(params)
    page_size = max(1, min(page_size, MAX_PAGE_SIZE))
    key = (
        "browse:"
        + hashlib.sha256(
            f"{catalogue_version()}|{query!r}|{number}|{page_size}".encode()
        ).hexdigest()
    )
    page = cache.get(key)
    if page is None:
        page = replace(_page(_filtered(query), number=number, page_size=page_size), key=key)
        cache.set(key, page, BROWSE_CACHE_SECONDS)
    return page


def _page(queryset: QuerySet[Dataset], *, number: int, page_size: int) -> BrowsePage:
    """Page `number` with the count of the matches: exact when the planner expects at most
    EXACT_COUNT_UP_TO of them, or when this page is the last (it shows where they end);
    otherwise the estimate, rounded to two significant digits and never below what the
    page has seen. Past the end of fewer matches than estimated, they are counted."""
    estimate = _estimated_count(queryset)
    if estimate > EXACT_COUNT_UP_TO:
        offset = (number - 1) * page_size
        rows = list(queryset[offset : offset + page_size + 1])  # one more: is there a next?
        results = [dataset_summary(d) for d in rows[:page_size]]
        if len(rows) > page_size:
            count = max(_two_digits(estimate), offset + len(rows))
            return BrowsePage(
                count=count,
                number=number,
                num_pages=max(-(-count // page_size), number + 1),
                results=results,
                count_exact=False,
            )
        if rows or number == 1:
            return BrowsePage(
                count=offset + len(rows), number=number, num_pages=number, results=results
            )
    paginator = Paginator(queryset, page_size)
    current = paginator.get_page(number)
    return BrowsePage(
        count=paginator.count,
        number=current.number,
        num_pages=paginator.num_pages,
        results=[dataset_summary(d) for d in current],
    )


def _estimated_count(queryset: QuerySet) -> int:
    """The rows PostgreSQL's planner expects the query to return (EXPLAIN: no row is read;
    migration 0012 keeps statistics on the words of listings for it). Zero elsewhere: SQLite
    counts."""
    if connection.vendor != "postgresql":
        return 0
    plan = json.loads(queryset.order_by().values("pk").explain(format="json"))
    return int((plan[0] if isinstance(plan, list) else plan)["Plan"]["Plan Rows"])


def _two_digits(number: int) -> int:
    """12,497 -> 12,000: an estimate shown with no more precision than it has."""
    unit = 10 ** max(0, len(str(number)) - 2)
    return number // unit * unit


def datasets_of_owner(*, owner: User) -> QuerySet[Dataset]:
    """Everything the owner uploaded, whatever its status, newest first."""
    return (
        Dataset.objects.filter(owner=owner)
        .select_related("owner")
        .only(*SUMMARY_FIELDS)
        .order_by("-created", "-id")
    )


def dataset_summary(dataset: Dataset) -> dict:
    return {
        "id": dataset.pk,
        "title": dataset.title,
        "excerpt": dataset.excerpt,
        "license": dataset.license,
        "tags": dataset.tags,
        "price_wei": str(dataset.price_wei),
        "owner": {"address": dataset.owner.address, "did": owner_did(dataset.owner.address)},
        "rows": dataset.rows,
        "columns": dataset.column_count,
        "status": dataset.status,
        "stage": dataset.stage,
        "progress": dataset.progress,
        "status_message": dataset.status_message,
        "cid": dataset.cid or None,
        "listing_id": dataset.listing_id,
        "created": dataset.created.isoformat(),
        "listed_at": dataset.listed_at.isoformat() if dataset.listed_at else None,
    }


def description_excerpt(text: str, limit: int = 200) -> str:
    """The start of a Markdown description as plain text (stored, for lists)."""
    plain = " ".join(html.unescape(strip_tags(render_markdown(text[:2000]))).split())
    return plain if len(plain) <= limit else plain[: limit - 1].rstrip() + "…"


# --- one dataset ---------------------------------------------------------------------------


def dataset_visible(*, dataset_id: int, viewer) -> Dataset:
    """A dataset the viewer may see: listed ones for everyone, the others for their owner."""
    dataset = Dataset.objects.filter(pk=dataset_id).select_related("owner", "parent").first()
    is_owner = dataset is not None and getattr(viewer, "pk", None) == dataset.owner_id
    if dataset is None or (dataset.status != Status.LISTED and not is_owner):
        raise ApplicationError(
            "No such dataset.", {"code": "not_found"}, status_code=http.HTTP_404_NOT_FOUND
        )
    return dataset


def _version_link(dataset: Dataset) -> dict:
    return {
        "id": dataset.pk,
        "title": dataset.title,
        "listing_id": dataset.listing_id,
        "status": dataset.status,
    }


def dataset_detail(*, dataset: Dataset, viewer) -> dict:
    is_owner = getattr(viewer, "pk", None) == dataset.owner_id
    versions = dataset.versions.all() if is_owner else dataset.versions.filter(status=Status.LISTED)
    return {
        **dataset_summary(dataset),
        "description": dataset.description,
        "description_html": render_markdown(dataset.description),
        "license_name": LICENSE_NAMES.get(dataset.license, dataset.license),
        "status_display": dataset.get_status_display(),
        "stage_display": dataset.get_stage_display(),
        "is_owner": is_owner,
        "file_format": dataset.file_format or None,
        "size_bytes": dataset.size_bytes,
        "columns": dataset.columns,
        "column_count": dataset.column_count,
        "unique_rows": dataset.unique_rows,
        "quality_warnings": dataset.quality_warnings,
        "content_sha256": dataset.content_sha256 or None,
        "encrypted_size": dataset.encrypted_size,
        "metadata_cid": dataset.metadata_cid or None,
        "metadata_sha256": dataset.metadata_sha256 or None,
        "tx_hash": dataset.tx_hash or None,
        "block_number": dataset.block_number,
        "confirmed_block": dataset.confirmed_block,
        "chain_id": settings.CHAIN_ID,
        "parent": _version_link(dataset.parent) if dataset.parent_id else None,
        "versions": [_version_link(v) for v in versions.order_by("created")],
        "usage": dataset_usage(dataset),
    }


def dataset_usage(dataset: Dataset) -> dict:
    """How many completed training runs used the dataset, and what it earned in them."""
    amounts = [
        int(amount or 0)
        for amount in dataset.runs.filter(run__status="completed").values_list(
            "amount_wei", flat=True
        )
    ]
    return {"runs": len(amounts), "earned_wei": str(sum(amounts))}


def listing_terms(dataset: Dataset) -> ListingTerms:
    """What the owner signs and the registry records for a listing."""
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


def dataset_signing_request(*, dataset: Dataset) -> dict | None:
    """The EIP-712 typed data the owner signs (eth_signTypedData_v4), with the owner's current
    nonce. Integers are decimal strings: JSON numbers lose precision above 2^53."""
    if dataset.status != Status.AWAITING_SIGNATURE:
        return None
    registry = DatasetRegistry.deployed()
    typed = registry.listing_typed_data(listing_terms(dataset))
    message = dict(typed["message"])
    for key in ("price", "parentId", "nonce", "deadline"):
        message[key] = str(message[key])
    return {**typed, "message": message}


# --- verification --------------------------------------------------------------------------


# --- a listed dataset's rows, in the training worker only --------------------------------------


def dataset_rows(*, dataset: Dataset, workdir: Path, expected_sha256: str):
    """The rows of a listed dataset as a pyarrow Table, read as the listing read them (see
    `listed_plaintext`)."""
    from datasets.listed import read_listed_file

    decrypted = listed_plaintext(dataset=dataset, workdir=workdir, expected_sha256=expected_sha256)
    with decrypted as plain:
        return read_listed_file(plain, dataset.read_format or None)


@contextmanager
def listed_plaintext(*, dataset: Dataset, workdir: Path, expected_sha256: str) -> Iterator[Path]:
    """A listed dataset's file, decrypted, while the caller reads it (in a worker only): the
    ciphertext from IPFS by CID, its hash checked against `expected_sha256` and the stored one,
    decrypted with the data key the marketplace keeps for it (`datasets.listed`) in memory when
    it fits (else into `workdir`), removed on leaving."""
    from datasets.listed import listed_file

    if expected_sha256.lower() != dataset.content_sha256:
        raise ContentMismatch(
            f"The bytes on IPFS for dataset {dataset.pk} ({dataset.cid}) do not match the hash "
            "recorded on-chain."
        )
    key = dataset.data_key()
    with listed_file(
        cid=dataset.cid, expected_sha256=expected_sha256, data_key=key, workdir=workdir,
        label=f"dataset {dataset.pk}",
    ) as plain:  # fmt: skip
        yield plain


def _check(name: str, label: str, ok: bool, detail: str) -> dict:
    return {"name": name, "label": label, "ok": ok, "detail": detail}


def dataset_verify(*, dataset: Dataset) -> dict:
    """Fetch the bytes from IPFS and recompute their hash, read the listing and its DatasetListed
    event from the chain, and compare all three with our record. Says which checks passed; with
    IPFS or the chain down there is no verdict (NodeUnavailable)."""
    if dataset.status != Status.LISTED or dataset.listing_id is None:
        raise ApplicationError(
            "Only listed datasets can be verified.",
            {"code": "not_listed"},
            status_code=http.HTTP_409_CONFLICT,
        )
    checks = []
    owner = Web3.to_checksum_address(dataset.owner.address)

    try:
        sha256, size = cat_sha256(dataset.cid)
        same = sha256 == dataset.content_sha256
        checks.append(
            _check(
                "ipfs_content",
                "The bytes on IPFS match the recorded hash",
                same,
                f"{size:,} bytes under {dataset.cid} hash to {sha256}"
                + ("" if same else f", but the record says {dataset.content_sha256}"),
            )
        )
    except IpfsError as exc:  # the node answered without the bytes: the check fails
        sha256 = None
        checks.append(
            _check("ipfs_content", "The bytes on IPFS match the recorded hash", False, str(exc))
        )

    event = None
    try:
        registry = DatasetRegistry.deployed()
        listing = registry.listing(dataset.listing_id)
        problems = []
        if Web3.to_checksum_address(listing.owner) != owner:
            problems.append(f"owner is {listing.owner}, not {owner}")
        if listing.price_wei != int(dataset.price_wei):
            problems.append(f"price is {listing.price_wei} wei, not {dataset.price_wei}")
        if listing.delisted:
            problems.append("it was delisted")
        checks.append(
            _check(
                "chain_listing",
                "The registry holds the listing with this owner and price",
                not problems,
                "; ".join(problems)
                or f"listing {listing.listing_id}: owner {listing.owner}, {listing.price_wei} wei",
            )
        )
        event = registry.listed_event(dataset.listing_id)
        if event is None:
            checks.append(
                _check(
                    "chain_event",
                    "The DatasetListed event names this CID and these hashes",
                    False,
                    f"no DatasetListed event for listing {dataset.listing_id} on chain",
                )
            )
        else:
            args = event.args
            expected = {
                "cid": dataset.cid,
                "contentHash": "0x" + dataset.content_sha256,
                "metadataHash": "0x" + dataset.metadata_sha256,
                "license": dataset.license,
                "price": int(dataset.price_wei),
                "parentId": dataset.parent.listing_id if dataset.parent_id else 0,
            }
            problems = [
                f"{key} is {args[key]!r}, the record says {value!r}"
                for key, value in expected.items()
                if args[key] != value
            ]
            if Web3.to_checksum_address(args["owner"]) != owner:
                problems.append(f"owner is {args['owner']}")
            if sha256 is not None and args["contentHash"] != "0x" + sha256:
                problems.append("its content hash is not the hash of the bytes on IPFS")
            if dataset.tx_hash and event.tx_hash != dataset.tx_hash:
                problems.append(f"it was emitted by {event.tx_hash}, not {dataset.tx_hash}")
            checks.append(
                _check(
                    "chain_event",
                    "The DatasetListed event names this CID and these hashes",
                    not problems,
                    "; ".join(problems)
                    or f"block {event.block_number}, transaction {event.tx_hash}",
                )
            )
    except NodeUnavailable:
        raise  # an outage proves nothing about the listing: no verdict (503)
    except Exception as exc:  # a revert such as UnknownListing: the chain does not have it
        checks.append(
            _check(
                "chain_listing",
                "The registry holds the listing with this owner and price",
                False,
                f"the registry does not know listing {dataset.listing_id} ({type(exc).__name__})",
            )
        )

    metadata_hash = (
        str(event.args["metadataHash"]).removeprefix("0x") if event else dataset.metadata_sha256
    )
    try:
        metadata_cid = raw_cid_for_sha256(metadata_hash)
        digest, _ = cat_sha256(metadata_cid)
        checks.append(
            _check(
                "metadata",
                "The metadata on IPFS matches the on-chain metadata hash",
                digest == metadata_hash,
                f"{metadata_cid} hashes to {digest}",
            )
        )
    except (IpfsError, ValueError) as exc:
        checks.append(
            _check(
                "metadata",
                "The metadata on IPFS matches the on-chain metadata hash",
                False,
                str(exc),
            )
        )
    return {
        "dataset": dataset.pk,
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
        "checked_at": datetime.now(UTC).isoformat(),
    }


def search_terms(params) -> dict:
    """The filters a browse page shows back to its visitor."""
    keys = ("search", "license", "tag", "owner", "min_rows", "max_price_wei", "ordering")
    return {key: params.get(key, "") for key in keys}


def no_filters(params) -> bool:
    return not any(v for k, v in search_terms(params).items() if k != "ordering")
