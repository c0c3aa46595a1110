"""Envelope encryption of dataset files: AES-256-GCM under a fresh data key per dataset, the data
key stored wrapped (AES-256-GCM) by the marketplace's master key.

A file is encrypted in chunks, so memory stays bounded whatever its size:

    header  = MAGIC (8 bytes) | chunk size (4 bytes, big-endian) | nonce prefix (7 random bytes)
    chunk i = AES-GCM(key, nonce = prefix | i (4 bytes) | final flag (1 byte),
                      plaintext chunk, associated data = header | i (8 bytes) | final flag)

Every chunk but the last holds exactly `chunk size` plaintext bytes; the last one is flagged final
(and may be empty). Reordered, duplicated, dropped or truncated chunks, a flipped bit anywhere and a
wrong key all fail authentication, so a decryption either yields the exact plaintext or raises.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"DMKTENC1"
HEADER = struct.Struct(">8sI7s")
CHUNK_SIZE = 1024 * 1024
TAG_SIZE = 16
KEY_SIZE = 32
# At most 2^32 chunks per file (the counter is 4 bytes): 4 PiB with 1 MiB chunks.
MAX_CHUNKS = 2**32
WRAP_VERSION = 1
WRAP_NONCE_SIZE = 12


class DecryptionError(Exception):
    """The ciphertext, the key or the wrapped key is not authentic (tampered, truncated, wrong)."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(data_key: bytes, master_key: bytes, *, context: bytes = b"") -> bytes:
    """The data key encrypted under the master key; `context` (e.g. b"dataset:42") must be given
    again to unwrap, so a wrapped key cannot be moved to another record."""
    if len(data_key) != KEY_SIZE or len(master_key) != KEY_SIZE:
        raise ValueError("data and master keys must be 32 bytes")
    nonce = os.urandom(WRAP_NONCE_SIZE)
    aad = bytes([WRAP_VERSION]) + context
    return bytes([WRAP_VERSION]) + nonce + AESGCM(master_key).encrypt(nonce, data_key, aad)


def unwrap_data_key(wrapped: bytes, master_key: bytes, *, context: bytes = b"") -> bytes:
    wrapped = bytes(wrapped)
    if len(wrapped) != 1 + WRAP_NONCE_SIZE + KEY_SIZE + TAG_SIZE or wrapped[0] != WRAP_VERSION:
        raise DecryptionError("the wrapped data key is malformed")
    nonce, sealed = wrapped[1 : 1 + WRAP_NONCE_SIZE], wrapped[1 + WRAP_NONCE_SIZE :]
    try:
        return AESGCM(master_key).decrypt(nonce, sealed, bytes([WRAP_VERSION]) + context)
    except InvalidTag:
        raise DecryptionError(
            "the data key does not unwrap: another master key, another record, or tampered"
        ) from None


def derived_key(master_key: bytes, *, context: bytes) -> bytes:
    """A key derived from the master key for one record (HKDF-SHA256 with `context` as info): it
    needs no storage, so it comes back with the master key alone (e.g. a model's key, from its
    job id, in a database rebuilt from the chain)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(master_key) != KEY_SIZE:
        raise ValueError("the master key must be 32 bytes")
    info = b"data-marketplace/derived-key/v1:" + context
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(master_key)


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def _read_exactly(src: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (files and sockets alike)."""
    parts, remaining = [], size
    while remaining:
        part = src.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, data_key: bytes, *, chunk_size: int = CHUNK_SIZE
) -> tuple[int, str]:
    """Encrypt `src` into `dst`; returns (ciphertext bytes written, sha-256 hex of them)."""
    if not 0 < chunk_size < 2**32 - TAG_SIZE:
        raise ValueError("chunk_size out of range")
    aead = AESGCM(data_key)
    header = HEADER.pack(MAGIC, chunk_size, os.urandom(7))
    prefix = header[-7:]
    digest = hashlib.sha256(header)
    dst.write(header)
    written = len(header)
    index = 0
    current = _read_exactly(src, chunk_size)
    while True:
        following = _read_exactly(src, chunk_size) if len(current) == chunk_size else b""
        final = not following
        if index >= MAX_CHUNKS:
            raise ValueError("the file is too large to encrypt with this chunk size")
        sealed = aead.encrypt(_nonce(prefix, index, final), current, _aad(header, index, final))
        dst.write(sealed)
        digest.update(sealed)
        written += len(sealed)
        if final:
            return written, digest.hexdigest()
        current, index = following, index + 1


def iter_decrypt(src: BinaryIO, data_key: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk. Each chunk is authentic when yielded; a truncated
    stream raises DecryptionError at its end, so a consumer must then discard everything."""
    header = _read_exactly(src, HEADER.size)
    if len(header) != HEADER.size:
        raise DecryptionError("the ciphertext is shorter than its header")
    magic, chunk_size, prefix = HEADER.unpack(header)
    if magic != MAGIC:
        raise DecryptionError("not a marketplace ciphertext (unknown header)")
    aead = AESGCM(data_key)
    index = 0
    while True:
        sealed = _read_exactly(src, chunk_size + TAG_SIZE)
        if len(sealed) < TAG_SIZE:
            raise DecryptionError("the ciphertext is truncated: its final chunk is missing")
        # Only a full-size chunk can be followed by another one.
        final = len(sealed) < chunk_size + TAG_SIZE
        try:
            plain = aead.decrypt(_nonce(prefix, index, final), sealed, _aad(header, index, final))
        except InvalidTag:
            if final:
                raise DecryptionError(
                    f"chunk {index} is not authentic (tampered, truncated or wrong key)"
                ) from None
            # A full-size chunk may also be the final one (plaintext a multiple of chunk_size).
            try:
                plain = aead.decrypt(_nonce(prefix, index, True), sealed, _aad(header, index, True))
            except InvalidTag:
                raise DecryptionError(
                    f"chunk {index} is not authentic (tampered, reordered or wrong key)"
                ) from None
            final = True
        yield plain
        if final:
            if src.read(1):
                raise DecryptionError("the ciphertext has data after its final chunk")
            return
        index += 1


def decrypt_stream(src: BinaryIO, dst: BinaryIO, data_key: bytes) -> int:
    """Decrypt `src` into `dst`; returns the plaintext length. On DecryptionError, whatever was
    written to `dst` must be discarded."""
    written = 0
    for plain in iter_decrypt(src, data_key):
        dst.write(plain)
        written += len(plain)
    return written


class EncryptingWriter:
    """`encrypt_stream` for bytes that arrive piece by piece (an upload): the same format, written
    to `dst` as each chunk fills; `close()` writes the final chunk and returns (ciphertext bytes
    written, sha-256 hex of them)."""

    def __init__(self, dst: BinaryIO, data_key: bytes, *, chunk_size: int = CHUNK_SIZE):
        self._dst, self._aead, self._chunk_size = dst, AESGCM(data_key), chunk_size
        self._header = HEADER.pack(MAGIC, chunk_size, os.urandom(7))
        self._digest = hashlib.sha256(self._header)
        self._buffer = bytearray()
        self._index = 0
        dst.write(self._header)
        self.written = len(self._header)

    def _seal(self, plain: bytes, final: bool) -> None:
        prefix = self._header[-7:]
        nonce, aad = _nonce(prefix, self._index, final), _aad(self._header, self._index, final)
        sealed = self._aead.encrypt(nonce, plain, aad)
        self._dst.write(sealed)
        self._digest.update(sealed)
        self.written += len(sealed)
        self._index += 1

    def write(self, data: bytes) -> int:
        self._buffer += data
        # A full chunk is sealed only once more bytes follow it: the last one is flagged final.
        while len(self._buffer) > self._chunk_size:
            self._seal(bytes(self._buffer[: self._chunk_size]), final=False)
            del self._buffer[: self._chunk_size]
        return len(data)

    def close(self) -> tuple[int, str]:
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        return self.written, self._digest.hexdigest()


# --- Keys sealed to a recipient's X25519 public key (validators) ---------------------------------
#
#   sealed = SEAL_VERSION (1 byte) | ephemeral public key (32) | nonce (12) | AES-GCM ciphertext
#   key    = HKDF-SHA256(X25519(ephemeral, recipient), salt = ephemeral | recipient,
#                        info = SEAL_INFO | context)
#
# Only the holder of the recipient's private key opens it; `context` (e.g. the job and listing a
# data key is for) must be given again, so a sealed key cannot be passed off as another's.

SEAL_VERSION = 1
SEAL_INFO = b"data-marketplace/sealed-key/v1:"
X25519_KEY_SIZE = 32


def _seal_key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=ephemeral + recipient,
        info=SEAL_INFO + context,
    ).derive(shared)  # fmt: skip


def seal_to(public_key: bytes, secret: bytes, *, context: bytes) -> bytes:
    """`secret` encrypted to the holder of the X25519 private key of `public_key` (32 bytes)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if len(public_key) != X25519_KEY_SIZE:
        raise ValueError("an X25519 public key is 32 bytes")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
    key = _seal_key(shared, ephemeral_public, public_key, context)
    nonce = os.urandom(WRAP_NONCE_SIZE)
    aad = bytes([SEAL_VERSION]) + context
    return (
        bytes([SEAL_VERSION]) + ephemeral_public + nonce + AESGCM(key).encrypt(nonce, secret, aad)
    )


def open_sealed(private_key: bytes, sealed: bytes, *, context: bytes) -> bytes:
    """The secret `seal_to` encrypted to this X25519 private key (32 raw bytes)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    sealed = bytes(sealed)
    head = 1 + X25519_KEY_SIZE + WRAP_NONCE_SIZE
    if len(sealed) < head + TAG_SIZE or sealed[0] != SEAL_VERSION:
        raise DecryptionError("the sealed key is malformed")
    ephemeral_public = sealed[1 : 1 + X25519_KEY_SIZE]
    nonce, ciphertext = sealed[1 + X25519_KEY_SIZE : head], sealed[head:]
    own = X25519PrivateKey.from_private_bytes(private_key)
    own_public = own.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _seal_key(shared, ephemeral_public, own_public, context)
        return AESGCM(key).decrypt(nonce, ciphertext, bytes([SEAL_VERSION]) + context)
    except (InvalidTag, ValueError):
        raise DecryptionError(
            "the sealed key does not open: sealed to another key, for another record, or tampered"
        ) from None


def x25519_keypair() -> tuple[bytes, bytes]:
    """(private, public) raw 32-byte X25519 keys."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )  # fmt: skip

    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_public(private_key: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(private_key)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
