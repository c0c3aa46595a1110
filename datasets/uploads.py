"""Uploaded files stream to a temporary file under settings.DATASET_UPLOAD_DIR (never into
memory), and an upload past settings.DATASET_MAX_UPLOAD_BYTES is dropped while it arrives."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile

# Set on the request when a file was dropped for its size (the view answers 413 with it).
REFUSED_ATTRIBUTE = "upload_refused_for_size"


def upload_dir() -> Path:
    path = Path(settings.DATASET_UPLOAD_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


class UploadOnDisk(UploadedFile):
    """An uploaded file in a temporary file that is deleted when the request ends, unless a
    service claimed it first (`claim`)."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        file = tempfile.NamedTemporaryFile(suffix=".part", dir=upload_dir())  # noqa: SIM115
        super().__init__(file, name, content_type, size, charset, content_type_extra)

    def temporary_file_path(self) -> str:
        return self.file.name

    def claim(self, destination: Path) -> Path:
        """Keep the bytes at `destination` (same filesystem: a hard link, no copy)."""
        self.file.flush()
        os.link(self.file.name, destination)
        return destination

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
        self.file.seek(0)
        self.file.size = file_size
        return self.file

    def upload_interrupted(self):
        if hasattr(self, "file"):
            self.file.close()
