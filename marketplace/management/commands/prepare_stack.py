import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from marketplace import devstack


class Command(BaseCommand):
    help = (
        "Wait for the chain and the IPFS node, apply migrations and deploy the contracts if this "
        "chain has none of ours yet (run by `make up` before the web server starts)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=120, help="seconds to wait per node")

    def _wait(self, label: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise CommandError(f"{label} did not answer within {timeout:.0f} s")
            time.sleep(0.5)
        self.stdout.write(f"{label} answers")

    def handle(self, *args, timeout: float, **options):
        self._wait(
            f"chain at {settings.CHAIN_RPC_URL}",
            lambda: devstack.anvil_answers(settings.CHAIN_RPC_URL),
            timeout,
        )
        self._wait(
            f"IPFS node at {settings.IPFS_API_URL}",
            lambda: devstack.ipfs_answers(settings.IPFS_API_URL),
            timeout,
        )
        call_command("migrate", interactive=False, verbosity=1)
        call_command("deploy_contracts")
        from datasets.models import Dataset

        if settings.CHAIN_ID == settings.DEV_CHAIN_ID and not Dataset.objects.exists():
            call_command("seed_demo")  # a fresh development stack shows real listings
