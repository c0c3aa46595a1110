from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        # The Celery app must be configured before any task is sent from the web process.
        from chain.indexer import register_handler
        from marketplace.celery import app  # noqa: F401
        from marketplace.services import did_event_record

        for event in ("DIDOwnerChanged", "DIDDelegateChanged", "DIDAttributeChanged"):
            register_handler(event, did_event_record)
