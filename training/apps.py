from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self) -> None:
        from chain.indexer import register_handler
        from training.earnings import earning_record, withdrawal_record
        from training.services import (
            training_run_funding_record,
            training_run_refunded_event_record,
            training_run_settled_event_record,
        )

        register_handler("JobFunded", training_run_funding_record)
        register_handler("JobSettled", training_run_settled_event_record)
        register_handler("JobRefunded", training_run_refunded_event_record)
        register_handler("PayeeCredited", earning_record)
        register_handler("Withdrawn", withdrawal_record)
