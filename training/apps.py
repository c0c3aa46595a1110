from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"

    def ready(self) -> None:
        from chain.indexer import register_handler
        from training.services import training_run_funding_record

        register_handler("JobFunded", training_run_funding_record)
