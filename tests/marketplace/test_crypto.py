"""Envelope encryption: what goes in comes out, and any change to the ciphertext is caught."""

import io
import os

import pytest

from marketplace.crypto import (
    DecryptionError,
    decrypt_stream,
    encrypt_stream,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)

CHUNK = 1024  # small chunks, so a few KiB span many of them


def encrypt(plaintext: bytes, key: bytes) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plaintext), out, key, chunk_size=CHUNK)
    return out.getvalue()


def decrypt(ciphertext: bytes, key: bytes) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(ciphertext), out, key)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17])
def test_round_trip_at_every_chunk_boundary(size):
    key, plaintext = new_data_key(), os.urandom(size)

    ciphertext = encrypt(plaintext, key)

    assert decrypt(ciphertext, key) == plaintext
    assert len(plaintext) < 16 or plaintext[:16] not in ciphertext


def test_the_reported_hash_and_length_are_those_of_the_ciphertext():
    import hashlib

    key, out = new_data_key(), io.BytesIO()

    length, digest = encrypt_stream(io.BytesIO(b"a,b\n1,2\n" * 500), out, key, chunk_size=CHUNK)

    assert length == len(out.getvalue())
    assert digest == hashlib.sha256(out.getvalue()).hexdigest()


def test_two_encryptions_of_the_same_file_differ():
    key, plaintext = new_data_key(), b"same rows" * 100
    assert encrypt(plaintext, key) != encrypt(plaintext, key)


def _chunks(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    header, body, size = ciphertext[:19], ciphertext[19:], CHUNK + 16
    return header, [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, c: h + b"".join(c[:-1]), id="final chunk dropped"),
        pytest.param(lambda h, c: h + b"".join(c)[:-1], id="last byte cut"),
        pytest.param(lambda h, c: h + c[1] + c[0] + b"".join(c[2:]), id="chunks reordered"),
        pytest.param(lambda h, c: h + c[0] + b"".join(c), id="chunk duplicated"),
        pytest.param(lambda h, c: h + b"".join(c) + b"extra", id="data appended"),
        pytest.param(
            lambda h, c: h + bytes([c[0][0] ^ 1]) + c[0][1:] + b"".join(c[1:]), id="bit flipped"
        ),
        pytest.param(lambda h, c: h[:-1] + bytes([h[-1] ^ 1]) + b"".join(c), id="header changed"),
        pytest.param(lambda h, c: h, id="header only"),
    ],
)
def test_any_change_to_the_ciphertext_fails_to_decrypt(tamper):
    key = new_data_key()
    header, chunks = _chunks(encrypt(os.urandom(3 * CHUNK + 100), key))

    with pytest.raises(DecryptionError):
        decrypt(tamper(header, chunks), key)


def test_a_whole_chunk_file_cut_after_a_full_chunk_is_detected():
    key = new_data_key()
    header, chunks = _chunks(encrypt(os.urandom(2 * CHUNK), key))

    with pytest.raises(DecryptionError, match="final chunk is missing"):
        decrypt(header + chunks[0], key)


def test_the_wrong_data_key_fails():
    ciphertext = encrypt(b"secret rows", new_data_key())
    with pytest.raises(DecryptionError):
        decrypt(ciphertext, new_data_key())


def test_wrapped_keys_open_only_with_their_master_key_and_context():
    master, data_key = os.urandom(32), new_data_key()

    wrapped = wrap_data_key(data_key, master, context=b"dataset:7")

    assert data_key not in wrapped
    assert unwrap_data_key(wrapped, master, context=b"dataset:7") == data_key
    with pytest.raises(DecryptionError):
        unwrap_data_key(wrapped, os.urandom(32), context=b"dataset:7")
    with pytest.raises(DecryptionError):
        unwrap_data_key(wrapped, master, context=b"dataset:8")
    with pytest.raises(DecryptionError):
        unwrap_data_key(wrapped[:-1], master, context=b"dataset:7")


def test_memory_stays_bounded_for_a_large_stream():
    """A 64 MiB stream goes through in 1 MiB chunks: peak allocations stay a few chunks."""
    import tracemalloc

    class Zeros(io.RawIOBase):
        def __init__(self, size):
            self.left = size

        def readable(self):
            return True

        def readinto(self, buffer):
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    class Sink(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            return len(data)

    tracemalloc.start()
    encrypt_stream(io.BufferedReader(Zeros(64 * 1024 * 1024)), Sink(), new_data_key())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak < 16 * 1024 * 1024
