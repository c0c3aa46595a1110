import json
import os

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Fill an empty (migrated) database from the chain and IPFS: identities, listings with "
        "their pinned metadata, versions, settled runs with their reports and attestations, "
        "earnings, withdrawals and validators; then the indexer goes on from the head. Needs the "
        "contracts' addresses, the chain's RPC, the IPFS node and the master key the listings "
        "were made with. With --check, names instead what of this database a rebuild would not "
        "bring back."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--contracts",
            default=os.environ.get("MARKETPLACE_CONTRACTS", ""),
            help='The contracts, as JSON {"IdentityRegistry": "0x…", "DatasetRegistry": "0x…", '
            '"TrainingEscrow": "0x…"} (default: MARKETPLACE_CONTRACTS). An address may be '
            '{"address": "0x…", "block": N} with its deployment block, which is otherwise '
            "searched for (the node must then answer for past blocks).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing: list the rows of this database that a rebuild from the chain "
            "and IPFS would not bring back.",
        )

    def handle(self, *args, contracts: str, check: bool, **options):
        from marketplace.rebuild import NOT_ON_THE_CHAIN

        if check:
            self._check()
            return
        try:
            addresses = json.loads(contracts) if contracts else {}
        except json.JSONDecodeError as exc:
            raise CommandError(f"--contracts is not JSON: {exc}") from None
        if not isinstance(addresses, dict) or not addresses:
            raise CommandError(
                "Give the contracts' addresses: --contracts or MARKETPLACE_CONTRACTS, as JSON "
                '{"IdentityRegistry": "0x…", "DatasetRegistry": "0x…", "TrainingEscrow": "0x…"}.'
            )
        rebuilt = self._rebuild(addresses)
        self.stdout.write(self.style.SUCCESS("Rebuilt from the chain and IPFS:"))
        for name, count in rebuilt.counts.items():
            self.stdout.write(f"  {count} {name}")
        if rebuilt.not_restored:
            self.stdout.write(
                self.style.WARNING(f"On the chain, but not restored ({len(rebuilt.not_restored)}):")
            )
            for line in rebuilt.not_restored:
                self.stdout.write(f"  - {line}")
        self.stdout.write("Never on the chain or IPFS, so not rebuilt:")
        for line in NOT_ON_THE_CHAIN:
            self.stdout.write(f"  - {line}")

    def _rebuild(self, addresses: dict):
        from chain.client import ChainMisconfigured, ChainUnavailable, get_web3
        from marketplace.errors import NodeUnavailable
        from marketplace.rebuild import RebuildRefused, chain_rebuild

        try:
            return chain_rebuild(
                w3=get_web3(timeout=60), contracts=addresses, progress=self.stdout.write
            )
        except RebuildRefused as exc:
            raise CommandError(str(exc)) from None
        except (ChainUnavailable, ChainMisconfigured, NodeUnavailable) as exc:
            raise CommandError(f"{exc} (nothing was written: run the rebuild again)") from None

    def _check(self) -> None:
        from marketplace.rebuild import NOT_ON_THE_CHAIN, database_not_on_the_chain

        found = database_not_on_the_chain()
        if found:
            self.stdout.write(
                self.style.WARNING(f"A rebuild from the chain would not bring back ({len(found)}):")
            )
            for line in found:
                self.stdout.write(f"  - {line}")
        else:
            self.stdout.write(self.style.SUCCESS("Every listing and run of this database is on "
                                                 "the chain and IPFS."))  # fmt: skip
        self.stdout.write("Nor, in any database:")
        for line in NOT_ON_THE_CHAIN:
            self.stdout.write(f"  - {line}")
