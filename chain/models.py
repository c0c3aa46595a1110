from django.db import IntegrityError, models, transaction

from marketplace.fields import WeiField


class Deployment(models.Model):
    """Where one of our contracts lives on one chain (the deploy command writes these)."""

    chain_id = models.PositiveBigIntegerField()
    contract = models.CharField(max_length=64)
    address = models.CharField(max_length=42)
    tx_hash = models.CharField(max_length=66)
    block_number = models.PositiveBigIntegerField()
    # sha-256 of the artifact's creation bytecode: tells whether this is the current build.
    bytecode_sha256 = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "contract"], name="one_deployment_per_chain"
            )
        ]
        ordering = ["chain_id", "contract"]

    def __str__(self) -> str:
        return f"{self.contract}@{self.address} (chain {self.chain_id})"


class SenderAccount(models.Model):
    """One past the highest nonce an operator key was given; its row is the lock that serialises
    sending (a nonce released below it is given again)."""

    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    next_nonce = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="one_sender_per_chain")
        ]

    def __str__(self) -> str:
        return f"{self.address} on chain {self.chain_id}: next nonce {self.next_nonce}"


class ChainTransaction(models.Model):
    """One intent sent by the operator, recorded before it is broadcast or waited for."""

    class Status(models.TextChoices):
        SIGNED = "signed", "Signed, not yet broadcast"
        SENT = "sent", "Sent, waiting to be mined"
        MINED = "mined", "Mined"
        REVERTED = "reverted", "Reverted"

    chain_id = models.PositiveBigIntegerField()
    # What this transaction is for, e.g. "deploy:DatasetRegistry"; one transaction per intent.
    intent = models.CharField(max_length=200)
    sender = models.CharField(max_length=42)
    nonce = models.PositiveBigIntegerField()
    to = models.CharField(max_length=42, blank=True)
    value_wei = WeiField(default=0)
    raw = models.TextField(
        help_text="The latest signed transaction, so a retry re-broadcasts it as is."
    )
    # The mined hash once mined; until then the latest of the intent's transactions.
    tx_hash = models.CharField(max_length=66, unique=True)
    # Earlier transactions at the same nonce, replaced by higher fees; any of them may be mined.
    replaced_hashes = models.JSONField(default=list, blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current transaction was first broadcast."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SIGNED)
    block_number = models.PositiveBigIntegerField(null=True, blank=True)
    gas_used = models.PositiveBigIntegerField(null=True, blank=True)
    contract_address = models.CharField(max_length=42, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "intent"], name="one_transaction_per_intent"
            ),
            models.UniqueConstraint(
                fields=["chain_id", "sender", "nonce"], name="one_transaction_per_nonce"
            ),
        ]
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.intent} {self.tx_hash} ({self.status})"


class IndexerCursor(models.Model):
    """The last block whose logs the indexer has processed, per chain, and the hashes of the last
    ranges' end blocks: a block whose hash changed was replaced by a reorganisation."""

    # How many range ends are kept: how deep a reorganisation can be told from the last match.
    KEPT_BLOCK_HASHES = 64

    chain_id = models.PositiveBigIntegerField(unique=True)
    last_block = models.BigIntegerField(default=-1)
    # [[number, "0x hash"], ...] of the latest processed ranges' end blocks, oldest first; the
    # last is last_block's.
    block_hashes = models.JSONField(default=list, blank=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"chain {self.chain_id} indexed to block {self.last_block}"

    @property
    def last_block_hash(self) -> str:
        if self.block_hashes and self.block_hashes[-1][0] == self.last_block:
            return self.block_hashes[-1][1]
        return ""

    def processed(self, number: int, block_hash: str) -> None:
        """`number` (whose hash is `block_hash`) is the new last processed block."""
        kept = [pair for pair in self.block_hashes if pair[0] < number]
        self.block_hashes = [*kept, [number, block_hash]][-self.KEPT_BLOCK_HASHES :]
        self.last_block = number


class SkippedEvent(models.Model):
    """A log of our contracts the indexer could not decode or apply. Anyone can send such a log
    (e.g. a listing whose CID is not UTF-8), so it is recorded with its reason for operators and
    the indexer moves on instead of stopping on it."""

    chain_id = models.PositiveBigIntegerField()
    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.PositiveBigIntegerField()
    contract = models.CharField(max_length=64, blank=True)
    event = models.CharField(max_length=64, blank=True, help_text="Blank when it did not decode")
    reason = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"], name="skipped_event_once"
            )
        ]
        ordering = ["-block_number", "-log_index"]

    def __str__(self) -> str:
        return f"{self.event or 'undecodable log'} at {self.tx_hash}#{self.log_index}"


class EventRecord(models.Model):
    """A row recorded from one log of our contracts (earnings, withdrawals, DID events): a log
    read twice, by the indexer and by whoever saw the receipt first, is recorded once."""

    tx_hash = models.CharField(max_length=66)
    log_index = models.PositiveIntegerField()
    block_number = models.PositiveBigIntegerField()
    block_timestamp = models.PositiveBigIntegerField()

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["tx_hash", "log_index"], name="%(app_label)s_%(class)s_once_per_log"
            )
        ]

    @classmethod
    def record_once(cls, *, tx_hash: str, log_index: int, block_number: int,
                    block_timestamp: int, **fields) -> None:  # fmt: skip
        try:
            with transaction.atomic():
                cls.objects.get_or_create(
                    tx_hash=tx_hash,
                    log_index=log_index,
                    defaults={
                        "block_number": block_number, "block_timestamp": block_timestamp, **fields
                    },
                )  # fmt: skip
        except IntegrityError:
            pass  # recorded meanwhile by another process
