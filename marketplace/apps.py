from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Marketplace"

    def ready(self) -> None:
        # The Celery app must be configured before any task is sent from the web process.
        from marketplace.celery import app  # noqa: F401
