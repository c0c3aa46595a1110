from django.apps import AppConfig


class ValidatorsConfig(AppConfig):
    name = "validators"

    def ready(self) -> None:
        from chain.indexer import register_handler
        from validators.services import validator_event_record

        for event in ("Staked", "UnstakeRequested", "StakeWithdrawn", "Slashed"):
            register_handler(event, validator_event_record)
