from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from marketplace.fields import WeiField

# SPDX identifiers a listing may carry (data licences first, then common software ones).
LICENSES = [
    ("CC0-1.0", "CC0 1.0 (public domain dedication)"),
    ("CC-BY-4.0", "Creative Commons Attribution 4.0"),
    ("CC-BY-SA-4.0", "Creative Commons Attribution-ShareAlike 4.0"),
    ("CC-BY-NC-4.0", "Creative Commons Attribution-NonCommercial 4.0"),
    ("ODbL-1.0", "Open Database License 1.0"),
    ("ODC-By-1.0", "Open Data Commons Attribution 1.0"),
    ("PDDL-1.0", "Open Data Commons Public Domain Dedication 1.0"),
    ("CDLA-Permissive-2.0", "Community Data License Agreement Permissive 2.0"),
    ("CDLA-Sharing-1.0", "Community Data License Agreement Sharing 1.0"),
    ("MIT", "MIT"),
    ("Apache-2.0", "Apache 2.0"),
    ("BSD-3-Clause", "BSD 3-Clause"),
]
# The registry stores a price in 88 bits.
MAX_PRICE_WEI = 2**88 - 1
# Differential privacy budgets a run may ask for and an owner may require (epsilon).
DP_EPSILON_MIN, DP_EPSILON_MAX = 0.01, 100.0


def data_key_context(content_sha256: str) -> bytes:
    """What a listing's wrapped data key is bound to: the sha-256 of the ciphertext it opens (the
    hash the chain records), so the wrap published in the listing's metadata opens in any database
    holding the listing, a rebuilt one included, and for no other bytes."""
    return f"dataset-content:{content_sha256.lower()}".encode()


def dp_epsilon_refusal(value) -> str | None:
    """Why `value` is not a usable epsilon, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "Epsilon must be a number."
    if not DP_EPSILON_MIN <= value <= DP_EPSILON_MAX:  # NaN fails this too
        return f"Epsilon must be between {DP_EPSILON_MIN} and {DP_EPSILON_MAX:g}."
    return None


class DatasetQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """Every write stamps `updated` (save() does it through auto_now; a guarded update
        would not): the newest stamp tells browsing caches that the catalogue changed."""
        kwargs.setdefault("updated", timezone.now())
        return super().update(**kwargs)


class Dataset(models.Model):
    """One listing: an uploaded file, described, encrypted, pinned to IPFS and registered."""

    class Status(models.TextChoices):
        PROCESSING = "processing", "Processing"
        AWAITING_SIGNATURE = "awaiting_signature", "Awaiting the owner's signature"
        REGISTERING = "registering", "Registering on-chain"
        LISTED = "listed", "Listed"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    class Stage(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        CHECKING = "checking", "Reading and checking the file"
        COMPARING = "comparing", "Comparing with other listings"
        ENCRYPTING = "encrypting", "Encrypting"
        PINNING = "pinning", "Pinning to IPFS"
        VERIFYING = "verifying", "Reading it back from IPFS"
        SIGNING = "signing", "Waiting for the owner's signature"
        RELAYING = "relaying", "Registering on-chain"
        DONE = "done", "Done"

    ACTIVE = (Status.AWAITING_SIGNATURE, Status.REGISTERING, Status.LISTED)
    FINAL = (Status.LISTED, Status.REJECTED, Status.FAILED)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="versions"
    )
    title = models.CharField(max_length=200)
    description = models.TextField(max_length=20_000, blank=True, help_text="Markdown")
    excerpt = models.CharField(max_length=300, blank=True, help_text="The description as text")
    license = models.CharField(max_length=32, choices=LICENSES)
    tags = models.JSONField(default=list, blank=True)
    price_wei = WeiField(validators=[MaxValueValidator(MAX_PRICE_WEI)])
    # Runs on this data must be differentially private with at most this epsilon (None: free).
    dp_epsilon_max = models.FloatField(null=True, blank=True)

    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PROCESSING)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent of the stage")
    # Why it was rejected or failed, or what the owner must do next.
    status_message = models.TextField(blank=True)
    # Deliveries of the processing step that started and never finished (their worker died).
    interrupted_attempts = models.PositiveSmallIntegerField(default=0)

    # The uploaded file, while it is being processed.
    original_filename = models.CharField(max_length=255)
    file_format = models.CharField(max_length=16, blank=True)
    # How the file is written (datasets.reader.FileFormat): the training worker reads it so.
    read_format = models.JSONField(default=dict, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    # The sealed upload staged on the IPFS node until processing ends (see datasets.uploads).
    upload_cid = models.CharField(max_length=100, blank=True)

    # What the file holds.
    rows = models.PositiveBigIntegerField(null=True, blank=True)
    column_count = models.PositiveIntegerField(null=True, blank=True)
    columns = models.JSONField(default=list, blank=True, help_text="Schema and statistics")
    quality_warnings = models.JSONField(default=list, blank=True)
    # Columns flagged as personal data or identifiers that the owner lets models use anyway; part
    # of the signed metadata, so a buyer's run can only use them with the owner's signature.
    feature_opt_in = models.JSONField(default=list, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    rows_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    unique_rows = models.PositiveBigIntegerField(null=True, blank=True)
    minhash = models.BinaryField(null=True, blank=True)

    # The ciphertext on IPFS and the key that opens it (wrapped by the master key).
    wrapped_data_key = models.BinaryField(null=True, blank=True)
    cid = models.CharField(max_length=100, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True, help_text="Of the pinned bytes")
    encrypted_size = models.PositiveBigIntegerField(null=True, blank=True)
    metadata_cid = models.CharField(max_length=100, blank=True)
    metadata_sha256 = models.CharField(max_length=64, blank=True)

    # Signing and registration.
    sign_deadline = models.PositiveBigIntegerField(null=True, blank=True)
    signature = models.CharField(max_length=132, blank=True)
    signature_round = models.PositiveSmallIntegerField(default=1)
    listing_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    tx_hash = models.CharField(max_length=66, blank=True)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    confirmed_block = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Where the indexer saw the DatasetListed event"
    )

    # Search: lower-cased title, description, tags and column names; tags as "|a|b|".
    search_text = models.TextField(blank=True)
    tag_index = models.TextField(blank=True)

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    listed_at = models.DateTimeField(null=True, blank=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            # Browsing orders by one of these and then by id in the same direction, so a forward
            # or backward scan of one index gives a page without sorting.
            models.Index(fields=["status", "created", "id"], name="dataset_browse_created"),
            models.Index(fields=["status", "price_wei", "id"], name="dataset_browse_price"),
            models.Index(fields=["status", "rows", "id"], name="dataset_browse_rows"),
            # The same within one licence (the browse page's licence menu): a page of a licence,
            # searched or not, reads only its rows, and a licence with a price bound is a range.
            models.Index(
                fields=["status", "license", "created", "id"], name="dataset_browse_license_created"
            ),
            models.Index(
                fields=["status", "license", "price_wei", "id"], name="dataset_browse_license_price"
            ),
            models.Index(
                fields=["status", "license", "rows", "id"], name="dataset_browse_license_rows"
            ),
            models.Index(fields=["owner", "-created"], name="dataset_owner_created"),
            models.Index(fields=["updated"], name="dataset_updated"),
        ]
        constraints = [
            # The same file, or the same rows, can be listed once.
            models.UniqueConstraint(
                fields=["file_sha256"],
                condition=models.Q(status__in=["awaiting_signature", "registering", "listed"])
                & ~models.Q(file_sha256=""),
                name="one_active_listing_per_file",
            ),
            models.UniqueConstraint(
                fields=["rows_sha256"],
                condition=models.Q(status__in=["awaiting_signature", "registering", "listed"])
                & ~models.Q(rows_sha256=""),
                name="one_active_listing_per_rows",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def key_context(self) -> bytes:
        """What the wrapped data key is bound to: the ciphertext it opens."""
        return data_key_context(self.content_sha256)

    def data_key(self) -> bytes:
        """The key that opens the listed ciphertext (workers only), unwrapped by the master key;
        listings wrapped before the wrap was bound to the ciphertext are bound to their row id."""
        from marketplace.crypto import DecryptionError, unwrap_data_key

        try:
            return unwrap_data_key(
                self.wrapped_data_key, settings.MASTER_KEY, context=self.key_context
            )
        except DecryptionError:
            legacy = f"dataset:{self.pk}".encode()
            return unwrap_data_key(self.wrapped_data_key, settings.MASTER_KEY, context=legacy)


class MinHashBand(models.Model):
    """One locality-sensitive key of a listing's MinHash: listings sharing a key are compared
    for near-duplicates, so an upload is never compared with every listing."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="minhash_bands")
    band = models.PositiveSmallIntegerField()
    key = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["band", "key"], name="minhash_band_key")]

    def __str__(self) -> str:
        return f"band {self.band} of dataset {self.dataset_id}"


class RowSignatureSample(models.Model):
    """How a listing's rows were sampled for the copy check (datasets.copycats): its row
    signatures of level >= `level` are in RowSignature (those that occur once in it); of the
    `sampled_rows` rows they stand for, `repeated_rows` share their signature with another."""

    dataset = models.OneToOneField(
        Dataset, on_delete=models.CASCADE, primary_key=True, related_name="row_signature_sample"
    )
    level = models.PositiveSmallIntegerField()
    sampled_rows = models.PositiveBigIntegerField()
    repeated_rows = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"row sample of dataset {self.dataset_id} (level {self.level})"


class RowSignature(models.Model):
    """A keyed hash of one sampled row signature of a listing: an upload's rows are looked up by
    these, so it is never compared with every listing."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="row_signatures")
    key = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["key", "dataset"], name="row_signature_key")]

    def __str__(self) -> str:
        return f"row signature of dataset {self.dataset_id}"
