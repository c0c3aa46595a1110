from celery import shared_task

from chain.client import ChainUnavailable, get_web3
from chain.indexer import chain_index_catch_up


@shared_task(name="chain.index", ignore_result=True, soft_time_limit=60, time_limit=90)
def index_chain() -> None:
    """One indexer tick (Celery beat runs it every few seconds); a down node waits for the next."""
    try:
        w3 = get_web3()
    except ChainUnavailable:
        return
    chain_index_catch_up(w3=w3)
