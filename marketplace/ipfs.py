"""The IPFS node, spoken to over its standard RPC API (/api/v0), so any kubo or js-ipfs works:
pin a file, read it back by CID, unpin. Connection problems become `IpfsUnavailable` (transient:
tasks retry, the API answers 503); anything else the node answers is an `IpfsError`."""

from __future__ import annotations

import base64
import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlparse

import base58
from django.conf import settings

from marketplace.errors import NodeUnavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ipfshttpclient
    from ipfshttpclient import exceptions as ipfs_errors


class IpfsUnavailable(NodeUnavailable):
    """The IPFS node does not answer (a transient failure: retry later)."""

    part = "ipfs"


def api_multiaddr(api_url: str) -> str:
    parsed = urlparse(api_url)
    host = parsed.hostname or "127.0.0.1"
    try:
        family = "ip6" if ip_address(host).version == 6 else "ip4"
    except ValueError:
        family = "dns"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"/{family}/{host}/tcp/{port}/{parsed.scheme}"


@contextmanager
def ipfs_client(timeout: float = 60.0):
    # ipfshttpclient.connect() rejects current daemons by version; the Client itself works.
    client = ipfshttpclient.Client(api_multiaddr(settings.IPFS_API_URL), timeout=timeout)
    try:
        yield client
    finally:
        client.close()


# ipfshttpclient passes urllib3 an argument it deprecated; the warning says nothing to operators.
warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)

_TRANSIENT = (
    ipfs_errors.ConnectionError,
    ipfs_errors.TimeoutError,
    ipfs_errors.ProtocolError,
    ipfs_errors.StatusError,
)


class IpfsError(Exception):
    """The node answered, but not as expected (e.g. the bytes read back differ)."""


def _transient(exc: Exception) -> IpfsUnavailable:
    return IpfsUnavailable(f"the IPFS node did not answer: {exc}")


# Every file goes in as CIDv1 with raw leaves in blocks of 1 MiB (the blocks the marketplace's
# ciphertext is sealed in): a quarter of the blocks of the default 256 KiB chunks, and no
# protobuf wrapping of the leaves, so the node adds a file about twice as fast.
BLOCK_SIZE = 1024 * 1024
ADD_OPTIONS = {"cid_version": 1, "raw_leaves": True, "chunker": f"size-{BLOCK_SIZE}"}


def pin_file(path: Path, *, raw_single_block: bool = False, pin: bool = True) -> str:
    """Add and pin a file; returns its CID (base32). `raw_single_block`: the file must fit one
    block, so that its CID is its sha-256 (see `raw_cid_for_sha256`). With `pin=False` the
    blocks are only added: nothing stays pinned until `pin_cid`, so a process that dies between
    the two leaves nothing behind that anyone must remember to unpin."""
    if raw_single_block and path.stat().st_size > BLOCK_SIZE:
        raise ValueError(f"{path.name} does not fit one block ({BLOCK_SIZE} bytes)")
    try:
        with ipfs_client() as client:
            answer = client.add(str(path), pin=pin, **ADD_OPTIONS)
    except ipfs_errors.ErrorResponse as exc:
        raise IpfsError(f"the IPFS node refused to add the file: {exc}") from exc
    except _TRANSIENT as exc:
        raise _transient(exc) from exc
    return normalize_cid(answer["Hash"])


def pin_cid(cid: str) -> None:
    """Pin what the node already holds (see `pin_file(pin=False)`)."""
    try:
        with ipfs_client() as client:
            client.pin.add(cid)
    except ipfs_errors.ErrorResponse as exc:
        raise IpfsError(f"the IPFS node refused to pin {cid}: {exc}") from exc
    except _TRANSIENT as exc:
        raise _transient(exc) from exc


def fetch_file(cid: str, destination: Path) -> tuple[str, int]:
    """Write the bytes of `cid` to `destination`; (sha-256 hex, length) of what was written."""
    digest, length = hashlib.sha256(), 0
    with destination.open("wb") as handle:
        for chunk in iter_cat(cid):
            digest.update(chunk)
            length += len(chunk)
            handle.write(chunk)
    return digest.hexdigest(), length


def iter_cat(cid: str) -> Iterator[bytes]:
    try:
        with ipfs_client() as client:
            yield from client.cat(cid, stream=True)
    except ipfs_errors.ErrorResponse as exc:
        raise IpfsError(f"the IPFS node cannot give {cid}: {exc}") from exc
    except _TRANSIENT as exc:
        raise _transient(exc) from exc


def cat_sha256(cid: str) -> tuple[str, int]:
    """(sha-256 hex, length) of the bytes the node returns for `cid`, read as a stream."""
    digest, length = hashlib.sha256(), 0
    for chunk in iter_cat(cid):
        digest.update(chunk)
        length += len(chunk)
    return digest.hexdigest(), length


def unpin(cid: str) -> None:
    """Unpin `cid`; one that is not pinned (any more) is fine."""
    if not cid:
        return
    try:
        with ipfs_client() as client:
            client.pin.rm(cid)
    except ipfs_errors.ErrorResponse as exc:
        if "not pinned" not in str(exc):
            raise IpfsError(f"the IPFS node refused to unpin {cid}: {exc}") from exc
    except _TRANSIENT as exc:
        raise _transient(exc) from exc


def is_pinned(cid: str) -> bool:
    """Whether the node holds `cid` pinned (answered from the node's own pin set: a CID it does
    not hold is not searched for on the network)."""
    try:
        with ipfs_client() as client:
            client.pin.ls(cid, type="recursive")
    except ipfs_errors.ErrorResponse as exc:
        if "not pinned" in str(exc):
            return False
        raise IpfsError(f"the IPFS node cannot list the pin of {cid}: {exc}") from exc
    except _TRANSIENT as exc:
        raise _transient(exc) from exc
    return True


def pinned_cids() -> set[str]:
    try:
        with ipfs_client() as client:
            return {normalize_cid(c) for c in client.pin.ls(type="recursive")["Keys"]}
    except _TRANSIENT as exc:
        raise _transient(exc) from exc


# --- CIDs -------------------------------------------------------------------------------------

_RAW_SHA256_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw codec, sha2-256, 32 bytes


def cid_bytes(cid: str) -> bytes:
    """The binary CID behind a text CID, whatever multibase it is written in (kubo answers in
    base32, js-ipfs in base58btc); CIDv0 (Qm...) is its multihash."""
    if cid.startswith("Qm"):
        return base58.b58decode(cid)
    if cid.startswith("z"):
        return base58.b58decode(cid[1:])
    if cid.startswith("b"):
        body = cid[1:].upper()
        return base64.b32decode(body + "=" * (-len(body) % 8))
    raise ValueError(f"unsupported CID encoding: {cid[:8]}…")


def normalize_cid(cid: str) -> str:
    """CIDv1 in base32 (the canonical text form); CIDv0 unchanged."""
    if cid.startswith("Qm"):
        return cid
    return "b" + base64.b32encode(cid_bytes(cid)).decode().lower().rstrip("=")


def raw_cid_for_sha256(sha256_hex: str) -> str:
    """The CIDv1 (raw, sha2-256) of a single-block file whose sha-256 is `sha256_hex`: with it,
    a 32-byte hash on-chain names a document on IPFS."""
    raw = _RAW_SHA256_PREFIX + bytes.fromhex(sha256_hex)
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
