from django.conf import settings


def marketplace(request) -> dict:
    return {"chain_id": settings.CHAIN_ID, "dev_chain": settings.CHAIN_ID == settings.DEV_CHAIN_ID}
