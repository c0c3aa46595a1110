from django.core.management.base import BaseCommand, CommandError

from chain.client import ChainMisconfigured, ChainUnavailable
from chain.wrappers import DatasetRegistry, TrainingEscrow
from marketplace.errors import ApplicationError
from marketplace.ipfs import IpfsUnavailable
from training.lineage import Check, model_fingerprint_matches, verify_lineage


def model_check(run) -> Check:
    """This marketplace holds the model's key: the decrypted model is the report's."""
    from training.selectors import run_model_plaintext

    name = "model decrypts to the report's fingerprint"
    try:
        model = run_model_plaintext(run)
    except ApplicationError as exc:
        return Check(name, False, exc.message)
    return Check(
        name, model_fingerprint_matches(model, run.report), run.report.get("model_fingerprint", "")
    )


class Command(BaseCommand):
    help = (
        "Re-verify a training run's lineage from the chain and IPFS alone. Give the run's escrow "
        "job id (0x + 64 hex), or a run number of this marketplace."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", help="escrow job id (0x...) or run number")

    def handle(self, *args, run: str, **options):
        found = None
        if run.startswith("0x"):
            try:
                job_id = bytes.fromhex(run[2:])
            except ValueError:
                job_id = b""
            if len(job_id) != 32:
                raise CommandError("A job id is 0x followed by 64 hex digits.")
        else:
            from training.models import TrainingRun

            found = TrainingRun.objects.filter(pk=int(run) if run.isdigit() else -1).first()
            if found is None:
                raise CommandError(f"No training run {run}.")
            job_id = bytes.fromhex(found.job_id)
        try:
            checks = verify_lineage(
                job_id, escrow=TrainingEscrow.deployed(), registry=DatasetRegistry.deployed()
            )
            if found is not None and found.status == found.Status.COMPLETED:
                checks.append(model_check(found))
        except (ChainUnavailable, ChainMisconfigured, IpfsUnavailable) as exc:
            raise CommandError(str(exc)) from None
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            self.stdout.write(f"{mark} {check.name}: {check.detail}")
        if not all(check.ok for check in checks):
            raise CommandError("The lineage does not verify.")
        self.stdout.write(self.style.SUCCESS("The lineage verifies from the chain and IPFS."))
