from django.core.management.base import BaseCommand, CommandError

from chain.client import ChainMisconfigured, ChainUnavailable, get_web3
from chain.sender import operator_sender
from chain.services import contracts_deploy


class Command(BaseCommand):
    help = "Deploy the marketplace contracts to the configured chain unless it already has them."

    def handle(self, *args, **options):
        try:
            w3 = get_web3()
        except (ChainUnavailable, ChainMisconfigured) as exc:
            raise CommandError(str(exc)) from None
        for deployment, created in contracts_deploy(w3=w3, sender=operator_sender(w3)):
            verb = "deployed" if created else "already deployed"
            self.stdout.write(
                f"{deployment.contract} {verb} at {deployment.address} "
                f"(chain {deployment.chain_id}, block {deployment.block_number})"
            )
