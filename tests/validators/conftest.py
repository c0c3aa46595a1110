from tests.training.conftest import buyer, buyer_api, cancer_datasets  # noqa: F401 - fixtures
