from django.core.management.base import BaseCommand, CommandError

from chain.client import ChainMisconfigured, ChainUnavailable, get_web3
from chain.sender import admin_sender, signing_address
from chain.services import contracts_deploy


class Command(BaseCommand):
    help = (
        "Deploy the marketplace contracts the configured chain does not have in their current "
        "build (from the admin key; the operator key's address becomes the escrow's operator)."
    )

    def handle(self, *args, **options):
        try:
            w3 = get_web3()
        except (ChainUnavailable, ChainMisconfigured) as exc:
            raise CommandError(str(exc)) from None
        deployments = contracts_deploy(
            w3=w3, sender=admin_sender(w3), operator=signing_address("operator")
        )
        for deployment, created in deployments:
            verb = "deployed" if created else "already deployed"
            self.stdout.write(
                f"{deployment.contract} {verb} at {deployment.address} "
                f"(chain {deployment.chain_id}, block {deployment.block_number})"
            )
