"""Validators: staked nodes that re-compute each run and sign what they found, and the requests
the marketplace hands them (one per run and assigned validator)."""

from django.db import models

from marketplace.fields import WeiField


class Validator(models.Model):
    """A staked node as the escrow records it (refreshed from the chain), with the X25519 key its
    DID document publishes."""

    class Status(models.TextChoices):
        NONE = "none", "Not staked"
        ACTIVE = "active", "Active"
        LEAVING = "leaving", "Leaving (unstake requested)"
        REMOVED = "removed", "Removed (slashed)"

    # The escrow's status codes, in order.
    CHAIN_STATUS = (Status.NONE, Status.ACTIVE, Status.LEAVING, Status.REMOVED)

    address = models.CharField(max_length=42, unique=True)
    stake_wei = WeiField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NONE)
    # When a leaving validator may withdraw its stake (unix time).
    available_at = models.PositiveBigIntegerField(default=0)
    slashed_wei = WeiField(default=0)
    # The X25519 public key of its DID document (base64), which the data keys are sealed to.
    encryption_key = models.CharField(max_length=64, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["address"]

    def __str__(self) -> str:
        return self.address


class AttestationRound(models.Model):
    """The attestation of one run: how many signatures settle it and until when they may come."""

    run = models.OneToOneField(
        "training.TrainingRun", on_delete=models.CASCADE, related_name="attestation_round"
    )
    quorum = models.PositiveSmallIntegerField()
    validators_per_run = models.PositiveSmallIntegerField()
    deadline = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"attestation of run {self.run_id}"


class AttestationRequest(models.Model):
    """What one validator is asked to re-compute: the run's terms and the datasets' keys sealed
    to its X25519 key; then its signed attestation, or its refusal and why."""

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for the validator"
        ATTESTED = "attested", "Attested"
        REFUSED = "refused", "Refused"

    round = models.ForeignKey(AttestationRound, on_delete=models.CASCADE, related_name="requests")
    validator = models.ForeignKey(Validator, on_delete=models.PROTECT, related_name="requests")
    position = models.PositiveSmallIntegerField()
    spec = models.JSONField()
    # listing id (as text) -> base64 of the data key sealed to the validator's key.
    sealed_keys = models.JSONField()
    sealed_dp_seed = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    signature = models.CharField(max_length=132, blank=True)
    report_hash = models.CharField(max_length=66, blank=True)
    payouts_hash = models.CharField(max_length=66, blank=True)
    reason = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["round", "position"]
        constraints = [
            models.UniqueConstraint(fields=["round", "validator"], name="one_request_per_validator")
        ]

    def __str__(self) -> str:
        return f"request {self.pk} to {self.validator_id}"
