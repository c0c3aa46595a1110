from django.conf import settings
from django.db import models

from chain.models import EventRecord
from marketplace.fields import WeiField
from training import catalog, compute


class TrainingRun(models.Model):
    """A model commissioned by a buyer on listed datasets, paid through the escrow contract."""

    class Status(models.TextChoices):
        AWAITING_PAYMENT = "awaiting_payment", "Awaiting payment"
        FUNDED = "funded", "Paid, waiting for a worker"
        RUNNING = "running", "Training"
        SETTLING = "settling", "Paying contributors"
        COMPLETED = "completed", "Completed"
        REFUNDING = "refunding", "Failed, refunding the payment"
        FAILED = "failed", "Failed"

    class Task(models.TextChoices):
        CLASSIFICATION = catalog.CLASSIFICATION
        REGRESSION = catalog.REGRESSION

    class Stage(models.TextChoices):
        QUEUED = "queued", "Waiting for a worker"
        FETCHING = "fetching", "Fetching and decrypting the datasets"
        COMBINING = compute.COMBINING, "Combining the datasets"
        TRAINING = compute.TRAINING, "Training the model"
        VALUING = compute.VALUING, "Measuring each dataset's contribution"
        PACKAGING = "packaging", "Saving, encrypting and pinning the model"
        ATTESTING = "attesting", "Waiting for validators to re-compute and attest the report"
        SETTLING = "settling", "Paying the contributors on-chain"
        REFUNDING = "refunding", "Refunding the payment on-chain"
        DONE = "done", "Done"

    # Where each stage of a run starts, in percent of the whole run (for the progress bar).
    STAGE_PROGRESS = {
        Stage.FETCHING: 5, Stage.COMBINING: 25, Stage.TRAINING: 30, Stage.VALUING: 60,
        Stage.PACKAGING: 75, Stage.ATTESTING: 82, Stage.SETTLING: 92,
    }  # fmt: skip
    # Moves that end a run go only from these (guarded updates).
    ACTIVE = (Status.FUNDED, Status.RUNNING, Status.SETTLING, Status.REFUNDING)

    buyer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="training_runs"
    )
    # The escrow's job id (bytes32, hex without 0x).
    job_id = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.AWAITING_PAYMENT, db_index=True
    )
    target_column = models.CharField(max_length=200)
    task = models.CharField(max_length=20, choices=Task.choices)
    model = models.CharField(max_length=40)
    test_fraction = models.FloatField(default=0.25)
    seed = models.PositiveIntegerField(default=0)
    # Differential privacy's budget for the fit (None: a plain fit).
    dp_epsilon = models.FloatField(null=True, blank=True)
    # Leave the rows the valuation finds harmful out of the final fit.
    curate = models.BooleanField(default=False)
    # A DP run's secret noise seed, wrapped under the master key: made once before training, so
    # a redelivered task draws the same noise (never published; a validator gets it re-wrapped).
    wrapped_dp_seed = models.BinaryField(null=True, blank=True)

    # The quote the buyer saw; the escrow prices the job itself at funding.
    price_wei = WeiField()
    compute_fee_wei = WeiField()

    # From the JobFunded event.
    funded_value_wei = WeiField(null=True, blank=True)
    fee_wei = WeiField(null=True, blank=True)
    refund_after = models.PositiveBigIntegerField(null=True, blank=True)
    funding_tx = models.CharField(max_length=66, blank=True)
    funding_block = models.PositiveBigIntegerField(null=True, blank=True)
    funded_at = models.DateTimeField(null=True, blank=True, help_text="When we saw the funding")
    # The task that took the run: only its (re)deliveries train it, so a run queued twice by
    # the sweep of stalled runs is trained once.
    claimed_by = models.CharField(max_length=64, blank=True)
    refund_queued_at = models.DateTimeField(null=True, blank=True)

    # Progress of the run, for the live page.
    stage = models.CharField(max_length=40, blank=True, choices=Stage.choices)
    progress = models.PositiveSmallIntegerField(default=0)
    stages_done = models.JSONField(default=list, blank=True)

    # Results.
    metrics = models.JSONField(default=dict, blank=True)
    figures = models.JSONField(default=dict, blank=True)
    model_cid = models.CharField(max_length=100, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    wrapped_model_key = models.BinaryField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True)
    # What the report was computed from (training.compute.RunSpec.as_dict): the chain's and
    # IPFS's facts about the job and its listings, and the run's options.
    spec = models.JSONField(default=dict, blank=True)
    report_hash = models.CharField(max_length=66, blank=True)
    settlement_tx = models.CharField(max_length=66, blank=True)
    settlement_block = models.PositiveBigIntegerField(null=True, blank=True)
    refund_tx = models.CharField(max_length=66, blank=True)
    error = models.TextField(blank=True)

    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class TrainingRunDataset(models.Model):
    """A dataset a run trains on, in the order of the escrow's dataset ids, with its payout."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="inputs")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.PROTECT, related_name="runs")
    position = models.PositiveSmallIntegerField()
    listing_id = models.PositiveBigIntegerField()
    owner_address = models.CharField(max_length=42)
    price_wei = WeiField()
    contribution = models.FloatField(null=True, blank=True)
    amount_wei = WeiField(null=True, blank=True)
    # Training rows curation left out, and repeats of rows credited once elsewhere (counts).
    excluded_rows = models.PositiveIntegerField(null=True, blank=True)
    uncredited_rows = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "dataset"], name="dataset_once_per_run"),
            models.UniqueConstraint(fields=["run", "position"], name="one_dataset_per_position"),
        ]

    def __str__(self) -> str:
        return f"dataset {self.dataset_id} in run {self.run_id}"


class Earning(EventRecord):
    """A PayeeCredited event: the escrow credited `amount_wei` to `payee` for a job."""

    payee = models.CharField(max_length=42, db_index=True)
    job_id = models.CharField(max_length=64, db_index=True)
    run = models.ForeignKey(
        TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="earnings"
    )
    amount_wei = WeiField()

    class Meta(EventRecord.Meta):
        ordering = ["-block_number", "-log_index"]

    def __str__(self) -> str:
        return f"{self.amount_wei} wei to {self.payee} for job {self.job_id[:10]}"


class Withdrawal(EventRecord):
    """A Withdrawn event: `account` took `amount_wei` out of the escrow."""

    account = models.CharField(max_length=42, db_index=True)
    amount_wei = WeiField()

    class Meta(EventRecord.Meta):
        ordering = ["-block_number", "-log_index"]

    def __str__(self) -> str:
        return f"{self.account} withdrew {self.amount_wei} wei"
