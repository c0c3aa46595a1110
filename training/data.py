"""A listed dataset's plaintext, in the worker only: ciphertext from IPFS by CID, its hash checked
against the on-chain listing, then decrypted to a private temporary folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings

from datasets.models import Dataset
from datasets.services import dataset_key_context
from datasets.storage import iter_cat
from marketplace.crypto import decrypt_stream, unwrap_data_key


class ContentMismatch(Exception):
    """The bytes behind a CID are not the ones the chain recorded."""


def dataset_plaintext_path(dataset: Dataset, workdir: Path, *, expected_sha256: str) -> Path:
    sealed = workdir / f"dataset-{dataset.pk}.enc"
    digest = hashlib.sha256()
    with sealed.open("wb") as out:
        for chunk in iter_cat(dataset.cid):
            digest.update(chunk)
            out.write(chunk)
    actual = digest.hexdigest()
    if actual != expected_sha256.lower() or actual != dataset.content_sha256:
        raise ContentMismatch(
            f"The bytes on IPFS for dataset {dataset.pk} ({dataset.cid}) do not match the hash "
            "recorded on-chain."
        )
    key = unwrap_data_key(
        dataset.wrapped_data_key, settings.MASTER_KEY, context=dataset_key_context(dataset.pk)
    )
    plain = workdir / f"dataset-{dataset.pk}.{dataset.file_format or 'csv'}"
    with sealed.open("rb") as src, plain.open("wb") as dst:
        decrypt_stream(src, dst, key)
    sealed.unlink()
    return plain
