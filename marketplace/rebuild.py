"""The database is a cache of the chain and IPFS: `manage.py rebuild_from_chain` fills an empty
one from them. From the contracts' deployment blocks, in bounded log ranges, it records the
deployments, the identities' DID events, every listing (its pinned metadata fetched and checked
against the on-chain hash, its data key from the metadata, its parent), the validators, every
settled run (its spec from the chain, its report and model from IPFS, the attestations from the
settlement's calldata), the earnings and the withdrawals; it leaves the indexer's cursor at the
head, so the indexer goes on from there.

The indexer's own handlers record what they can (DID events, a listing's move to listed, a
settlement, earnings, withdrawals, validators); this module creates the rows they expect, which
in normal operation the uploads and the commissions create.

What was never on the chain or IPFS does not come back (`NOT_ON_THE_CHAIN`); what the chain names
but that cannot be restored (a paid run not settled yet, a listing whose metadata is gone) is
named in the result."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.color import no_style
from django.db import InterfaceError, OperationalError, connection, transaction
from eth_utils import keccak
from web3 import Web3

from chain.client import PRODUCT_CONTRACTS, bytecode_sha256, contract_at, load_artifact
from chain.events import ChainEvent, block_time, decode_log, logs_between
from chain.models import Deployment, IndexerCursor
from marketplace.errors import NodeUnavailable

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

# What only the database held: no event or pinned document records it, so no rebuild brings it
# back (the command prints these after what it found on the chain but could not restore).
NOT_ON_THE_CHAIN = (
    "uploads that were never listed (processing, awaiting the owner's signature, rejected, "
    "failed) and their files",
    "training runs that were never paid (awaiting payment), and runs that failed and were "
    "refunded (their options and error were never published)",
    "validators' answers that no settlement carried (an attestation after the quorum, a "
    "refusal and its reason) and each attestation round's deadline",
    "when each run was commissioned and started (a rebuilt run was created when it was paid)",
    "the copy check's private indexes of the listed files (file and row hashes, MinHash, row "
    "signatures): `manage.py index_row_signatures --all`, where the workers run, indexes the "
    "rows of the rebuilt listings again",
    "accounts' display names, sessions, API tokens and sign-in nonces",
    "the operator's transaction records (the sender reads its nonce from the chain again)",
)

# The tables a rebuild fills: it refuses a database where any of them holds a row.
REBUILT_MODELS = (
    "chain.Deployment", "chain.IndexerCursor", "marketplace.User", "marketplace.DidEvent",
    "datasets.Dataset", "training.TrainingRun", "training.Earning", "training.Withdrawal",
    "validators.Validator",
)  # fmt: skip


class RebuildRefused(Exception):
    """The rebuild cannot start: the database is not empty, or the contracts are not ours."""


@dataclass
class Rebuilt:
    counts: Counter = field(default_factory=Counter)
    # What the chain names but could not be restored, one sentence each.
    not_restored: list[str] = field(default_factory=list)


def database_rows() -> dict[str, int]:
    """The rebuilt tables that hold rows, with their counts."""
    from django.apps import apps

    counts = {label: apps.get_model(label).objects.count() for label in REBUILT_MODELS}
    return {label: count for label, count in counts.items() if count}


# --- the contracts -------------------------------------------------------------------------------


def _first_block_with_code(w3: Web3, address: str, head: int) -> int:
    """The block the contract at `address` was created in: a binary search of eth_getCode (the
    node must answer for past blocks; otherwise give the block)."""
    low, high = 0, head
    while low < high:
        middle = (low + high) // 2
        if w3.eth.get_code(address, block_identifier=middle):
            high = middle
        else:
            low = middle + 1
    return low


def _creation(w3: Web3, address: str, block: int) -> tuple[str, str]:
    """(transaction hash, "0x" creation code) of the transaction of `block` that created
    `address`; ("", "") when a contract created it."""
    for tx_hash in w3.eth.get_block(block)["transactions"]:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        if receipt["contractAddress"] and Web3.to_checksum_address(
            receipt["contractAddress"]
        ) == Web3.to_checksum_address(address):
            return tx_hash.to_0x_hex(), w3.eth.get_transaction(tx_hash)["input"].to_0x_hex()
    return "", ""


def deployments_record(w3: Web3, contracts: dict, *, head: int) -> list[Deployment]:
    """Record where each product contract lives: `contracts` maps each name to its address, or
    to {"address": ..., "block": deployment block} when the node cannot answer for past blocks."""
    missing = [name for name in PRODUCT_CONTRACTS if name not in contracts]
    unknown = sorted(set(contracts) - set(PRODUCT_CONTRACTS))
    if missing or unknown:
        raise RebuildRefused(
            f"Give the addresses of {', '.join(PRODUCT_CONTRACTS)}"
            + (f"; not of {', '.join(unknown)}" if unknown else "")
            + "."
        )
    records = []
    for name in PRODUCT_CONTRACTS:
        given = contracts[name]
        given = given if isinstance(given, dict) else {"address": given}
        try:
            address = Web3.to_checksum_address(given["address"])
        except (KeyError, ValueError, TypeError):
            raise RebuildRefused(f"{name}: {given!r} is not an address.") from None
        if not w3.eth.get_code(address, block_identifier=head):
            raise RebuildRefused(f"There is no contract at {address} ({name}) on this chain.")
        block = given.get("block")
        block = _first_block_with_code(w3, address, head) if block is None else int(block)
        tx_hash, code = _creation(w3, address, block)
        built = load_artifact(name)["bytecode"].lower()
        # A contract of another build is recorded as such: deploy_contracts would replace it.
        build = bytecode_sha256(name) if code.lower().startswith(built) else "0" * 64
        contract_at(w3, name, address)
        records.append(
            Deployment.objects.create(
                chain_id=settings.CHAIN_ID,
                contract=name,
                address=address,
                tx_hash=tx_hash,
                block_number=block,
                bytecode_sha256=build,
            )  # fmt: skip
        )
    return records


# --- listings ------------------------------------------------------------------------------------


class NotRestored(Exception):
    """One listing or run cannot come back; the message says why."""


def _text(metadata: dict, name: str, default: str = "") -> str:
    value = metadata.get(name, default)
    if not isinstance(value, str):
        raise NotRestored(f"its metadata's {name} is not text")
    return value


def _held(cid: str, what: str) -> None:
    """The node must hold `cid` pinned (the marketplace pins everything it publishes): asked of
    the node's own pin set, since reading a CID the node does not hold waits on the network
    (an attacker's listing may name any CID)."""
    from marketplace.ipfs import IpfsError, is_pinned

    try:
        held = is_pinned(cid)
    except IpfsError:
        held = False
    if not held:
        raise NotRestored(f"its {what} is not pinned on this IPFS node ({cid[:80]})")


def _listing_metadata(event: ChainEvent) -> dict:
    from marketplace.ipfs import IpfsError, raw_cid_for_sha256
    from training.compute import RunFailed, listing_metadata

    listing_id = event.args["listingId"]
    _held(raw_cid_for_sha256(event.args["metadataHash"].removeprefix("0x")), "metadata")
    try:
        metadata = listing_metadata(
            event.args["metadataHash"].removeprefix("0x"), listing_id=listing_id
        )
    except RunFailed as exc:
        raise NotRestored(str(exc)) from None
    except IpfsError as exc:
        raise NotRestored(f"its metadata is not on IPFS ({exc})") from None
    except ValueError:
        raise NotRestored("its metadata is not a JSON document") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("content"), dict):
        raise NotRestored("its metadata is not a listing's metadata document")
    return metadata


def _data_key_wrap(content: dict, content_sha256: str) -> tuple[bytes | None, str]:
    """(the wrapped data key the metadata publishes, or None; why it cannot be used, or "")."""
    from datasets.models import data_key_context
    from marketplace.crypto import DecryptionError, unwrap_data_key

    key = content.get("key")
    if not isinstance(key, dict) or not isinstance(key.get("wrapped"), str):
        return None, "its data key was never published (it was listed before keys were)"
    try:
        wrapped = base64.b64decode(key["wrapped"], validate=True)
        unwrap_data_key(wrapped, settings.MASTER_KEY, context=data_key_context(content_sha256))
    except (ValueError, DecryptionError):
        return None, "its data key does not open with this master key"
    return wrapped, ""


def listing_restore(w3: Web3, event: ChainEvent) -> tuple[object, str]:
    """The listing of a DatasetListed event, from its metadata on IPFS: (dataset, "") when it
    can be trained on, (dataset, why not) when it is restored as failed (its owner sees it,
    buyers do not). Raises NotRestored when it cannot come back at all."""
    from datasets.models import Dataset
    from datasets.selectors import description_excerpt
    from datasets.services import _search_text, dataset_listed_event_record
    from marketplace.did import did_for
    from marketplace.ipfs import IpfsError, cat_sha256, raw_cid_for_sha256
    from marketplace.services import user_for_address

    args = event.args
    content_sha256 = args["contentHash"].removeprefix("0x")
    metadata_sha256 = args["metadataHash"].removeprefix("0x")
    metadata = _listing_metadata(event)
    content = metadata["content"]
    if content.get("sha256") != content_sha256 or content.get("cid", args["cid"]) != args["cid"]:
        raise NotRestored("its metadata describes other bytes than the chain records")
    if metadata.get("owner") != did_for(args["owner"], settings.CHAIN_ID):
        raise NotRestored("its metadata names another owner than the chain records")
    _held(args["cid"], "encrypted file")
    try:
        actual, encrypted_size = cat_sha256(args["cid"])
    except IpfsError as exc:
        raise NotRestored(f"its encrypted file is not on IPFS ({exc})") from None
    if actual != content_sha256:
        raise NotRestored("the bytes on IPFS are not the ones the chain records")
    wrapped, unusable = _data_key_wrap(content, content_sha256)

    owner = user_for_address(address=args["owner"])
    parent = None
    if args["parentId"]:
        parent = Dataset.objects.filter(listing_id=args["parentId"]).first()
        if parent is None:
            raise NotRestored(f"its parent listing {args['parentId']} did not come back")
    number = metadata.get("dataset_id")
    free = isinstance(number, int) and number > 0 and not Dataset.objects.filter(pk=number).exists()
    title, description = _text(metadata, "title"), _text(metadata, "description")
    tags = metadata.get("tags") or []
    columns = metadata.get("columns") or []
    if not isinstance(tags, list) or not isinstance(columns, list):
        raise NotRestored("its metadata's tags or columns are not lists")
    try:
        created = datetime.fromisoformat(_text(metadata, "created"))
    except ValueError:
        raise NotRestored("its metadata's creation time is not a time") from None
    dataset = Dataset(
        pk=number if free else None,
        owner=owner,
        parent=parent,
        title=" ".join(title.split()),
        description=description,
        excerpt=description_excerpt(description),
        license=args["license"],
        tags=tags,
        price_wei=args["price"],
        dp_epsilon_max=metadata.get("dp_epsilon_max"),
        status=Dataset.Status.REGISTERING,
        stage=Dataset.Stage.RELAYING,
        progress=100,
        file_format=_text(content, "format"),
        read_format=content.get("reading") or {},
        size_bytes=content.get("size_bytes") or 0,
        rows=metadata.get("rows"),
        column_count=len(columns),
        columns=columns,
        quality_warnings=metadata.get("quality_warnings") or [],
        feature_opt_in=metadata.get("feature_opt_in") or [],
        unique_rows=metadata.get("unique_rows"),
        wrapped_data_key=wrapped,
        cid=args["cid"],
        content_sha256=content_sha256,
        encrypted_size=encrypted_size,
        metadata_cid=raw_cid_for_sha256(metadata_sha256),
        metadata_sha256=metadata_sha256,
        search_text=_search_text(title=title, description=description, tags=tags, columns=columns),
        tag_index="".join(f"|{t}" for t in tags) + "|",
    )
    try:
        # Its file's name was never published; the rest is checked as an upload is.
        dataset.full_clean(exclude=["original_filename"], validate_constraints=False)
    except ValidationError as exc:
        raise NotRestored(f"its metadata does not make a listing ({exc.messages[0]})") from None
    dataset.save()
    # What the indexer does when it sees the listing: listed, confirmed, at the block's time.
    dataset_listed_event_record(w3, event)
    Dataset.objects.filter(pk=dataset.pk).update(created=created)
    if unusable:
        Dataset.objects.filter(pk=dataset.pk).update(
            status=Dataset.Status.FAILED,
            status_message=f"Rebuilt from the chain, but {unusable}: list the file again.",
        )
    dataset.refresh_from_db()
    return dataset, unusable


# --- runs ----------------------------------------------------------------------------------------


def run_options(report: dict) -> dict:
    """A run's options (training.compute.OPTIONS) as its report states them."""
    dp = report.get("differential_privacy")
    return {
        "task": report["task"],
        "target": report["target"],
        "model": report["model"],
        "test_fraction": report["test_fraction"],
        "seed": report["valuation"]["seed"],
        "dp_epsilon": dp["epsilon"] if dp else None,
        "curate": report["valuation"]["curate"],
        "min_group_rows": report["privacy"]["min_group_rows"],
        "min_leaf_rows": report["privacy"]["min_leaf_rows"],
        "code_version": report["code_version"],
    }


def _settled_report(settled: ChainEvent, job_id: str) -> dict:
    from marketplace.ipfs import IpfsError, iter_cat, raw_cid_for_sha256

    report_hash = settled.args["reportHash"].removeprefix("0x")
    _held(raw_cid_for_sha256(report_hash), "report")
    try:
        raw = b"".join(iter_cat(raw_cid_for_sha256(report_hash)))
    except IpfsError as exc:
        raise NotRestored(f"its report is not on IPFS ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != report_hash:
        raise NotRestored("the report on IPFS does not match the hash the settlement records")
    report = json.loads(raw)
    if report.get("job_id") != "0x" + job_id:
        raise NotRestored("its report names another job")
    return report


def _model_key(model_cid: str, job_id: str) -> tuple[str, bytes | None]:
    """(sha-256 of the encrypted model on IPFS, its key wrapped under the master key, or None
    when the model was encrypted under a key only the old database held)."""
    from marketplace.crypto import DecryptionError, iter_decrypt, wrap_data_key
    from marketplace.ipfs import IpfsError, iter_cat
    from training.pipeline import model_data_key, model_key_context

    _held(model_cid, "model")
    try:
        sealed = b"".join(iter_cat(model_cid))
    except IpfsError as exc:
        raise NotRestored(f"its model is not on IPFS ({exc})") from None
    key = model_data_key(job_id)
    try:
        for _ in iter_decrypt(io.BytesIO(sealed), key):
            pass
    except DecryptionError:
        return hashlib.sha256(sealed).hexdigest(), None
    wrapped = wrap_data_key(key, settings.MASTER_KEY, context=model_key_context(job_id))
    return hashlib.sha256(sealed).hexdigest(), wrapped


def _attestations_restore(w3: Web3, escrow, run, settled: ChainEvent) -> int:
    """The attestations the settlement carried, from its calldata, in the order the run's
    validators were assigned (by keccak256(job id | address)); returns how many."""
    from chain.attestations import recover_attester
    from validators.models import AttestationRequest, AttestationRound, Validator
    from validators.services import expected_payouts_hash

    tx = w3.eth.get_transaction(settled.tx_hash)
    try:
        function, args = escrow.contract.decode_function_input(tx["input"])
    except ValueError:
        function = None
    if function is None or function.fn_name != "settle":
        return 0
    payouts = expected_payouts_hash(run.report)
    job_id = bytes.fromhex(run.job_id)
    signed = [
        (
            recover_attester(
                bytes(signature),
                chain_id=settings.CHAIN_ID,
                escrow=escrow.address,
                job_id=job_id,
                report_hash=bytes(args["reportHash"]),
                payouts_hash=bytes.fromhex(payouts[2:]),
            ),  # fmt: skip
            bytes(signature),
        )
        for signature in args["signatures"]
    ]
    signed.sort(key=lambda pair: keccak(job_id + bytes.fromhex(pair[0][2:])))
    functions, at = escrow.contract.functions, settled.block_number
    settled_at = block_time(w3, at)
    round_ = AttestationRound.objects.create(
        run=run,
        quorum=functions.quorum().call(block_identifier=at),
        validators_per_run=functions.validatorsPerRun().call(block_identifier=at),
        deadline=settled_at,
    )
    for position, (signer, signature) in enumerate(signed):
        validator, _ = Validator.objects.get_or_create(address=signer)
        AttestationRequest.objects.create(
            round=round_, validator=validator, position=position, spec=run.spec, sealed_keys={},
            status=AttestationRequest.Status.ATTESTED, signature="0x" + signature.hex(),
            report_hash=run.report_hash, payouts_hash=payouts, answered_at=settled_at,
        )  # fmt: skip
    return len(signed)


def run_restore(
    w3: Web3, escrow, registry, funded: ChainEvent, settled: ChainEvent, *, from_block: int
):
    """A settled run: its options from its report, its spec from the chain and IPFS (as a
    validator reads it), its payouts, model and attestations. Raises NotRestored. Returns
    (run, attestations, why its model cannot be opened or "")."""
    from chain.wrappers import JobTerms
    from datasets.models import Dataset
    from marketplace.services import user_for_address
    from training.compute import RunFailed, spec_from_chain
    from training.models import TrainingRun, TrainingRunDataset
    from training.services import training_run_settled_event_record

    job_id = funded.args["jobId"].removeprefix("0x")
    if TrainingRun.objects.filter(job_id=job_id).exists():
        raise NotRestored("another buyer's job under the same id came back first")
    report = _settled_report(settled, job_id)
    terms = JobTerms.from_event(funded)
    try:
        options = run_options(report)
        spec = spec_from_chain(
            escrow, registry, terms=terms, funding_block=funded.block_number, options=options,
            from_block=from_block,
        )  # fmt: skip
        paid = {int(d["listing_id"]): d for d in report["datasets"]}
    except (KeyError, TypeError) as exc:
        raise NotRestored(f"its report lacks {exc}") from None
    except RunFailed as exc:
        raise NotRestored(str(exc)) from None
    datasets = {d.listing_id: d for d in Dataset.objects.filter(listing_id__in=terms.dataset_ids)}
    lost = [i for i in terms.dataset_ids if i not in datasets or i not in paid]
    if lost:
        raise NotRestored(f"listing {', '.join(map(str, lost))} did not come back")
    model_cid = settled.args["modelCid"]
    model_sha256, wrapped_model_key = _model_key(model_cid, job_id)
    compute_fee_wei, _, _ = escrow.contract.functions.fees().call(
        block_identifier=funded.block_number
    )
    funded_at = block_time(w3, funded.block_number)
    run = TrainingRun(
        buyer=user_for_address(address=terms.buyer),
        job_id=job_id,
        status=TrainingRun.Status.SETTLING,
        stage=TrainingRun.Stage.SETTLING,
        target_column=options["target"],
        task=options["task"],
        model=options["model"],
        test_fraction=options["test_fraction"],
        seed=options["seed"],
        dp_epsilon=options["dp_epsilon"],
        curate=options["curate"],
        # The buyer paid the quote exactly (the escrow takes no other amount).
        price_wei=terms.value_wei,
        compute_fee_wei=compute_fee_wei,
        funded_value_wei=terms.value_wei,
        fee_wei=terms.fee_wei,
        refund_after=terms.refund_after,
        funding_tx=funded.tx_hash,
        funding_block=funded.block_number,
        funded_at=funded_at,
        metrics=report.get("metrics") or {},
        figures=report.get("figures") or {},
        model_cid=model_cid,
        model_sha256=model_sha256,
        wrapped_model_key=wrapped_model_key,
        report=report,
        spec=spec.as_dict(),
        report_hash=settled.args["reportHash"].lower(),
    )
    try:
        run.full_clean()
    except ValidationError as exc:
        raise NotRestored(f"its report does not make a run ({exc.messages[0]})") from None
    run.save()
    TrainingRun.objects.filter(pk=run.pk).update(created=funded_at, started_at=funded_at)
    for position, facts in enumerate(spec.listings):
        entry = paid[facts.listing_id]
        TrainingRunDataset.objects.create(
            run=run, dataset=datasets[facts.listing_id], position=position,
            listing_id=facts.listing_id, owner_address=facts.owner, price_wei=facts.price_wei,
            contribution=entry["contribution"], amount_wei=int(entry["amount_wei"]),
            excluded_rows=entry["excluded_rows"], uncredited_rows=entry["uncredited_rows"],
        )  # fmt: skip
    attestations = _attestations_restore(w3, escrow, run, settled)
    # What the indexer does when it sees the settlement: completed at the block's time.
    training_run_settled_event_record(w3, settled)
    run.refresh_from_db()
    unusable = (
        ""
        if wrapped_model_key
        else "its model was encrypted under a key only the old database held"
    )
    return run, attestations, unusable


# --- the whole rebuild ---------------------------------------------------------------------------


def _decoded(w3: Web3, logs, addresses: dict[str, str], rebuilt: Rebuilt) -> list[ChainEvent]:
    """Our contracts' events among `logs`. Anyone can make our contracts emit a log our code
    cannot decode (e.g. a string that is not UTF-8): as the indexer does, such a log is skipped,
    and named in the result, never a reason to stop."""
    events = []
    for log in logs:
        try:
            event = decode_log(w3, log, addresses)
        except Exception as exc:
            where = f"0x{bytes(log['transactionHash']).hex().removeprefix('0x')}#{log['logIndex']}"
            reason = f"{type(exc).__name__}: {exc}"[:200]
            rebuilt.not_restored.append(f"log {where} (block {log['blockNumber']}): {reason}")
            continue
        if event is not None:
            events.append(event)
    return events


def _in_savepoint(restore: Callable, *args):
    """`restore(*args)`, its writes undone if it cannot come back (anyone can emit a log our
    code cannot take, as the indexer knows); an outage stops the whole rebuild, which keeps
    nothing then: run it again."""
    try:
        with transaction.atomic():
            return restore(*args), ""
    except (NodeUnavailable, OperationalError, InterfaceError):
        raise
    except NotRestored as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - named in the output, the rebuild goes on
        logger.warning("could not restore from %s: %s", args[-1], exc, exc_info=True)
        return None, f"{type(exc).__name__}: {exc}"[:500]


def chain_rebuild(*, w3: Web3, contracts: dict, progress: Progress = lambda line: None) -> Rebuilt:
    """Fill this (empty) database from the chain and IPFS; see the module's docstring."""
    from chain.wrappers import DatasetRegistry, TrainingEscrow
    from marketplace.services import did_event_record
    from training.earnings import earning_record, withdrawal_record
    from validators.services import validator_event_record

    filled = database_rows()
    if filled:
        raise RebuildRefused(
            "The database is not empty ("
            + ", ".join(f"{count} {label}" for label, count in filled.items())
            + "): rebuild into an empty database (migrated, nothing else)."
        )
    rebuilt = Rebuilt()
    head = w3.eth.block_number - settings.CHAIN_CONFIRMATIONS
    with transaction.atomic():
        deployments = deployments_record(w3, contracts, head=head)
        addresses = {d.contract: d.address for d in deployments}
        start = min(d.block_number for d in deployments)
        for d in deployments:
            progress(f"{d.contract} at {d.address}, deployed in block {d.block_number}")
        progress(
            f"reading the logs of blocks {start}-{head}, "
            f"{settings.CHAIN_LOG_RANGE_BLOCKS} blocks at a time"
        )
        logs = logs_between(w3, address=list(addresses.values()), from_block=start, to_block=head)
        events = _decoded(w3, logs, addresses, rebuilt)
        by_name: dict[str, list[ChainEvent]] = defaultdict(list)
        for event in events:
            by_name[event.name].append(event)
        progress(f"{len(events)} events of our contracts")
        timestamps: dict[int, int] = {}

        def stamp(number: int) -> int:
            if number not in timestamps:
                timestamps[number] = w3.eth.get_block(number)["timestamp"]
            return timestamps[number]

        did_events = [e for e in events if e.name.startswith("DID")]
        for event in did_events:
            did_event_record(w3, event, stamp(event.block_number))
        rebuilt.counts["identities"] = len({e.args["identity"] for e in did_events})
        rebuilt.counts["DID events"] = len(did_events)
        progress(f"{len(did_events)} DID events of {rebuilt.counts['identities']} identities")

        for event in by_name["DatasetListed"]:
            restored, why = _in_savepoint(listing_restore, w3, event)
            listing = f"listing {event.args['listingId']}"
            if restored is None:
                rebuilt.not_restored.append(f"{listing}: {why}")
                continue
            dataset, unusable = restored
            rebuilt.counts["listings"] += 1
            rebuilt.counts["versions"] += dataset.parent_id is not None
            if unusable:
                rebuilt.not_restored.append(
                    f"{listing} (“{dataset.title}”): restored as failed, {unusable}"
                )
        for name in ("DatasetPriceChanged", "DatasetDelisted"):
            for event in by_name[name]:
                rebuilt.not_restored.append(
                    f"listing {event.args['listingId']}: {name} in block {event.block_number} "
                    "(the marketplace does not follow price changes and delistings)"
                )
        progress(f"{rebuilt.counts['listings']} listings ({rebuilt.counts['versions']} versions)")

        for event in events:
            if event.name in ("Staked", "UnstakeRequested", "StakeWithdrawn", "Slashed"):
                validator_event_record(w3, event)
        rebuilt.counts["validators"] = len({e.args["validator"] for e in by_name["Staked"]})

        escrow, registry = TrainingEscrow.deployed(w3), DatasetRegistry.deployed(w3)
        listed_from = next(d.block_number for d in deployments if d.contract == registry.name)
        ended = {
            (e.args["jobId"], e.args["buyer"]): e
            for e in by_name["JobSettled"] + by_name["JobRefunded"]
        }
        for funded in by_name["JobFunded"]:
            job = f"job {funded.args['jobId']} of {funded.args['buyer']}"
            end = ended.get((funded.args["jobId"], funded.args["buyer"]))
            if end is None:
                rebuilt.not_restored.append(
                    f"{job}: paid in {funded.tx_hash} and not settled yet (its run's options are "
                    "published with its report at settlement; the buyer may reclaim the payment "
                    f"from the escrow after {funded.args['refundAfter']} unix time)"
                )
                continue
            if end.name == "JobRefunded":
                rebuilt.not_restored.append(f"{job}: refunded in {end.tx_hash}, no model")
                continue
            restored, why = _in_savepoint(
                functools.partial(run_restore, from_block=listed_from), w3, escrow, registry,
                funded, end,
            )  # fmt: skip
            if restored is None:
                rebuilt.not_restored.append(f"{job}: {why}")
                continue
            run, attestations, unusable = restored
            rebuilt.counts["runs"] += 1
            rebuilt.counts["attestations"] += attestations
            if unusable:
                rebuilt.not_restored.append(f"{job}: {unusable}; the buyer cannot download it")
        progress(f"{rebuilt.counts['runs']} settled runs")

        for event in by_name["PayeeCredited"]:
            earning_record(w3, event, timestamps)
        for event in by_name["Withdrawn"]:
            withdrawal_record(w3, event, timestamps)
        rebuilt.counts["earnings"] = len(by_name["PayeeCredited"])
        rebuilt.counts["withdrawals"] = len(by_name["Withdrawn"])

        from marketplace.models import User

        rebuilt.counts["accounts"] = User.objects.count()
        cursor, _ = IndexerCursor.objects.get_or_create(chain_id=settings.CHAIN_ID)
        cursor.block_hashes = []
        cursor.processed(head, w3.eth.get_block(head)["hash"].to_0x_hex())
        cursor.save()
        _sequences_reset()
    progress(f"the indexer goes on from block {head + 1}")
    return rebuilt


def _sequences_reset() -> None:
    """Rows kept their numbers: the next upload is numbered after them."""
    from datasets.models import Dataset

    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), [Dataset]):
            cursor.execute(statement)


# --- what a rebuild would not bring back ---------------------------------------------------------


def database_not_on_the_chain() -> list[str]:
    """The rows of this database that a rebuild from the chain and IPFS would not bring back (or
    would bring back without what only this database holds), one sentence each."""
    from datasets.models import Dataset, data_key_context
    from marketplace.crypto import DecryptionError, unwrap_data_key
    from training.models import TrainingRun
    from training.pipeline import model_data_key, model_key_context

    found = []
    for dataset in Dataset.objects.exclude(status=Dataset.Status.LISTED).order_by("pk"):
        found.append(
            f"dataset #{dataset.pk} “{dataset.title}”: {dataset.get_status_display().lower()}, "
            "not on the chain"
        )
    for dataset in Dataset.objects.filter(status=Dataset.Status.LISTED).order_by("pk"):
        try:
            unwrap_data_key(
                dataset.wrapped_data_key,
                settings.MASTER_KEY,
                context=data_key_context(dataset.content_sha256),
            )
        except (DecryptionError, TypeError):
            found.append(
                f"dataset #{dataset.pk} “{dataset.title}”: its data key is not in its pinned "
                "metadata (listed before keys were published); it would come back as failed"
            )
    for run in TrainingRun.objects.exclude(status=TrainingRun.Status.COMPLETED).order_by("pk"):
        found.append(
            f"training run #{run.pk} (job 0x{run.job_id[:12]}…): "
            f"{run.get_status_display().lower()}, not settled on the chain"
        )
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.COMPLETED).order_by("pk"):
        try:
            key = unwrap_data_key(
                run.wrapped_model_key, settings.MASTER_KEY, context=model_key_context(run.job_id)
            )
        except (DecryptionError, TypeError):
            key = b""
        if key != model_data_key(run.job_id):
            found.append(
                f"training run #{run.pk}: its model's key is held by this database only; a "
                "rebuilt one could not open the model"
            )
    return found
