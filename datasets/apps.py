from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "datasets"

    def ready(self) -> None:
        from chain.indexer import register_handler, register_reorg_handler
        from datasets.services import dataset_confirmations_forget, dataset_listed_event_record

        register_handler("DatasetListed", dataset_listed_event_record)
        register_reorg_handler(dataset_confirmations_forget)
