import json
import logging
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run a validator node: re-compute the training runs the marketplace assigns to this key "
        "and sign the reports (needs VALIDATOR_PRIVATE_KEY, the marketplace's URL, the chain's "
        "RPC and an IPFS node; never the marketplace's database, broker or master key)."
    )
    requires_system_checks: list = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument(
            "--marketplace-url",
            default=os.environ.get("MARKETPLACE_URL", settings.PUBLIC_ORIGIN),
            help="The marketplace's public origin (default: MARKETPLACE_URL).",
        )
        parser.add_argument(
            "--stake",
            action="store_true",
            help="Stake the escrow's minimum from this key at start if it has no stake.",
        )
        parser.add_argument(
            "--dev-account",
            type=int,
            help="Development chain only: sign with anvil dev account N (beyond the users' 1-9) "
            "instead of VALIDATOR_PRIVATE_KEY.",
        )
        parser.add_argument(
            "--contracts",
            default=os.environ.get("VALIDATOR_CONTRACTS", ""),
            help='The contracts to trust, as JSON {"TrainingEscrow": "0x…", "DatasetRegistry": '
            '"0x…", "IdentityRegistry": "0x…"} (default: VALIDATOR_CONTRACTS; else the '
            "marketplace's /healthz says).",
        )
        parser.add_argument("--poll-seconds", type=float, default=1.0)
        parser.add_argument(
            "--state-dir",
            default=os.environ.get("VALIDATOR_STATE_DIR", ""),
            help="Where the node keeps its X25519 key and what it signed (default: "
            "VALIDATOR_STATE_DIR, else <data dir>/validator-<address>).",
        )

    def handle(self, *args, **options):
        from eth_account import Account

        from marketplace.config import SettingError, env_private_key
        from validators.node import NodeConfig, ValidatorNode

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if options["dev_account"] is not None:
            from marketplace.devstack import dev_private_key

            if settings.CHAIN_ID != settings.DEV_CHAIN_ID or options["dev_account"] < 10:
                raise CommandError(
                    "--dev-account is for the development chain, with accounts from 10 on "
                    "(1-9 are the users')."
                )
            key = dev_private_key(options["dev_account"])
        elif not os.environ.get("VALIDATOR_PRIVATE_KEY"):
            raise CommandError("VALIDATOR_PRIVATE_KEY is not set: the node signs with its own key.")
        else:
            try:
                key = env_private_key("VALIDATOR_PRIVATE_KEY", None)
            except SettingError as exc:
                raise CommandError(str(exc)) from None
        try:
            contracts = json.loads(options["contracts"]) if options["contracts"] else {}
        except json.JSONDecodeError as exc:
            raise CommandError(f"--contracts is not JSON: {exc}") from None
        address = Account.from_key(key).address
        state_dir = Path(options["state_dir"] or settings.DATA_DIR / f"validator-{address}")
        node = ValidatorNode(
            NodeConfig(
                private_key=key,
                marketplace_url=options["marketplace_url"],
                rpc_url=settings.CHAIN_RPC_URL,
                state_dir=state_dir,
                poll_seconds=options["poll_seconds"],
                stake=options["stake"],
                contracts=contracts,
            )
        )
        try:
            node.run_forever()
        except KeyboardInterrupt:
            pass
