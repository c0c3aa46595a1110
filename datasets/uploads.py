"""Uploaded files stream to a temporary file under settings.DATASET_UPLOAD_DIR (never into
memory), encrypted as they arrive, and an upload past settings.DATASET_MAX_UPLOAD_BYTES is
dropped while it arrives.

An upload is never the plain file: UPLOAD_MAGIC | upload id (16 bytes) | its data key wrapped by
settings.MASTER_KEY (bound to the upload id) | the bytes in marketplace.crypto's chunked AES-GCM
format. Once the request is accepted, that ciphertext is staged on the IPFS node (`stage`): the
web process and the workers share no disk, and a worker on any host fetches it by CID
(`fetch_staged`) into a working folder of its own, decrypts it while it reads it (`plaintext`)
and unpins it when the listing no longer needs it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile

from marketplace.crypto import (
    WRAP_NONCE_SIZE,
    EncryptingWriter,
    decrypt_stream,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from marketplace.ipfs import IpfsError, fetch_file, is_pinned, pin_file
from marketplace.processes import pid_alive

# Set on the request when a file was dropped for its size (the view answers 413 with it).
REFUSED_ATTRIBUTE = "upload_refused_for_size"
UPLOAD_MAGIC = b"DMKTUPL1"
UPLOAD_ID_SIZE = 16
WRAPPED_KEY_SIZE = 1 + WRAP_NONCE_SIZE + 32 + 16
# Memory-backed where the system has it: decrypted uploads below the size setting go there.
MEMORY_DIR = Path("/dev/shm")


def upload_dir() -> Path:
    path = Path(settings.DATASET_UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _key_context(upload_id: bytes) -> bytes:
    return b"upload:" + upload_id.hex().encode()


def _sealing_writer(target: BinaryIO) -> EncryptingWriter:
    """Write the header of a sealed upload to `target`; the writer encrypts what follows."""
    upload_id, data_key = os.urandom(UPLOAD_ID_SIZE), new_data_key()
    wrapped = wrap_data_key(data_key, settings.MASTER_KEY, context=_key_context(upload_id))
    target.write(UPLOAD_MAGIC + upload_id + wrapped)
    return EncryptingWriter(target, data_key)


def seal_copy(source: Path, destination: Path) -> None:
    """Store a file of ours (not a request's upload) sealed, as an upload is."""
    with source.open("rb") as src, destination.open("wb") as dst:
        writer = _sealing_writer(dst)
        while chunk := src.read(1024 * 1024):
            writer.write(chunk)
        writer.close()


def stage(upload: UploadOnDisk | Path) -> str:
    """Pin the sealed bytes of a request's upload (or of a file of ours, sealed first) on the
    IPFS node, for whichever worker processes it; returns the CID. The caller unpins it."""
    if isinstance(upload, UploadOnDisk):
        upload.file.flush()
        return pin_file(Path(upload.temporary_file_path()))
    with tempfile.TemporaryDirectory(dir=upload_dir(), prefix="seal-") as folder:
        sealed = Path(folder) / "upload"
        seal_copy(upload, sealed)
        return pin_file(sealed)


def fetch_staged(cid: str, destination: Path) -> Path:
    """The staged (sealed) upload, copied from the IPFS node to this host's `destination`.
    Raises IpfsError when the node no longer holds it."""
    if not is_pinned(cid):
        raise IpfsError(f"the IPFS node no longer holds the staged upload {cid}")
    fetch_file(cid, destination)
    return destination


WORKDIR_PREFIX = "work"


@contextmanager
def working_folder() -> Iterator[Path]:
    """A private folder on this host for one processing attempt, removed on leaving; named
    after this process so that what a killed worker left is found (remove_orphan_plaintexts)."""
    with tempfile.TemporaryDirectory(
        dir=upload_dir(), prefix=f"{WORKDIR_PREFIX}-{os.getpid()}-"
    ) as folder:
        yield Path(folder)


def is_sealed(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(UPLOAD_MAGIC)) == UPLOAD_MAGIC


PLAINTEXT_PATTERN = re.compile(rf"(plain|{WORKDIR_PREFIX})-(?P<pid>\d+)-")


def plaintext_path(*, size: int, beside: Path, suffix: str) -> Path:
    """A new private file for decrypted bytes: in memory (a memory-backed folder) when they fit
    under settings.DATASET_DECRYPT_IN_MEMORY_MAX_BYTES, else in `beside`. Named after this
    process, so that what a killed worker left is found and removed (remove_orphan_plaintexts)."""
    fits = size <= settings.DATASET_DECRYPT_IN_MEMORY_MAX_BYTES and _memory_has_room(size)
    folder = MEMORY_DIR if fits else beside
    handle, name = tempfile.mkstemp(prefix=f"plain-{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(handle)
    return Path(name)


def _memory_has_room(size: int) -> bool:
    """A memory-backed folder may be small (a container's /dev/shm is often 64 MiB)."""
    return MEMORY_DIR.is_dir() and shutil.disk_usage(MEMORY_DIR).free >= 2 * size


def remove_orphan_plaintexts() -> list[Path]:
    """Remove the decrypted files and working folders of processes that are gone (killed
    while reading)."""
    removed = []
    for folder in (MEMORY_DIR, upload_dir()):
        for path in folder.iterdir() if folder.is_dir() else []:
            match = PLAINTEXT_PATTERN.match(path.name)
            if match and not pid_alive(int(match["pid"])):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


@contextmanager
def plaintext(path: Path) -> Iterator[Path]:
    """The upload decrypted, for the worker while it reads it: in memory (a memory-backed
    folder) when it fits under settings.DATASET_DECRYPT_IN_MEMORY_MAX_BYTES, else in a private
    file beside it; removed on leaving, however it ends. An upload stored before uploads were
    sealed is read as it is."""
    if not is_sealed(path):
        yield path
        return
    plain = plaintext_path(size=path.stat().st_size, beside=path.parent, suffix=path.suffix)
    try:
        with path.open("rb") as src, plain.open("wb") as dst:
            header = src.read(len(UPLOAD_MAGIC) + UPLOAD_ID_SIZE + WRAPPED_KEY_SIZE)
            upload_id = header[len(UPLOAD_MAGIC) : len(UPLOAD_MAGIC) + UPLOAD_ID_SIZE]
            wrapped = header[len(UPLOAD_MAGIC) + UPLOAD_ID_SIZE :]
            key = unwrap_data_key(wrapped, settings.MASTER_KEY, context=_key_context(upload_id))
            decrypt_stream(src, dst, key)
        yield plain
    finally:
        plain.unlink(missing_ok=True)


class UploadOnDisk(UploadedFile):
    """An uploaded file, encrypted into a temporary file that is deleted when the request ends
    (`stage` hands its bytes to the IPFS node first). `size` is the plain file's."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        file = tempfile.NamedTemporaryFile(suffix=".part", dir=upload_dir())  # noqa: SIM115
        super().__init__(file, name, content_type, size, charset, content_type_extra)
        self._writer = _sealing_writer(file)

    def write(self, data: bytes) -> int:
        return self._writer.write(data)

    def seal(self) -> None:
        """The last bytes arrived: write the final chunk."""
        self._writer.close()
        self.file.flush()

    def temporary_file_path(self) -> str:
        return self.file.name

    def close(self):
        try:
            return self.file.close()
        except FileNotFoundError:
            pass


class StreamToDiskUploadHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file = UploadOnDisk(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.DATASET_MAX_UPLOAD_BYTES:
            setattr(self.request, REFUSED_ATTRIBUTE, self.file_name or "the file")
            raise SkipFile()  # Django closes (and so deletes) the partial file
        self.file.write(raw_data)
        return None

    def file_complete(self, file_size):
        self.file.seal()
        self.file.seek(0)
        self.file.size = file_size
        return self.file

    def upload_interrupted(self):
        if hasattr(self, "file"):
            self.file.close()
