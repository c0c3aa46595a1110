"""How each part of the stack is doing, for /healthz and the status page.

Every probe has a short timeout and runs concurrently with the others, so a node that is down
makes the page say so quickly instead of hanging it.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection


@dataclass
class PartHealth:
    name: str
    ok: bool
    figures: dict = field(default_factory=dict)
    error: str = ""


def _probe_database() -> PartHealth:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return PartHealth("database", True, {"vendor": connection.vendor})


def _probe_redis() -> PartHealth:
    import redis

    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_connect_timeout=settings.HEALTH_TIMEOUT_SECONDS,
        socket_timeout=settings.HEALTH_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
        info = client.info("server")
    finally:
        client.close()
    return PartHealth("redis", True, {"version": info.get("redis_version", "")})


def _probe_celery() -> PartHealth:
    from marketplace.celery import app

    replies = app.control.ping(timeout=1.0)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return PartHealth("celery", False, {"workers": 0}, "no Celery worker answered")
    return PartHealth("celery", True, {"workers": len(workers), "names": workers})


def _probe_chain() -> PartHealth:
    from chain.client import get_web3

    w3 = get_web3(timeout=settings.HEALTH_TIMEOUT_SECONDS)
    return PartHealth(
        "chain",
        True,
        {
            "chain_id": settings.CHAIN_ID,
            "latest_block": w3.eth.block_number,
        },
    )


def _probe_ipfs() -> PartHealth:
    from marketplace.ipfs import ipfs_client

    with ipfs_client(timeout=settings.HEALTH_TIMEOUT_SECONDS) as client:
        version = client.version()
    return PartHealth("ipfs", True, {"version": version["Version"]})


def _probe_contracts(deployments: dict[str, str]) -> PartHealth:
    from web3 import Web3

    from chain.client import PRODUCT_CONTRACTS, get_web3

    missing = [name for name in PRODUCT_CONTRACTS if name not in deployments]
    if missing:
        return PartHealth(
            "contracts", False, {"addresses": deployments},
            f"not deployed on chain {settings.CHAIN_ID}: {', '.join(missing)}",
        )  # fmt: skip
    w3 = get_web3(timeout=settings.HEALTH_TIMEOUT_SECONDS)
    codeless = [
        n for n, a in deployments.items() if w3.eth.get_code(Web3.to_checksum_address(a)) == b""
    ]
    if codeless:
        return PartHealth(
            "contracts", False, {"addresses": deployments},
            f"no code at the recorded address of {', '.join(codeless)} (was the chain reset?)",
        )  # fmt: skip
    return PartHealth("contracts", True, {"addresses": deployments})


def _run(name: str, probe, *args) -> PartHealth:
    try:
        return probe(*args)
    except Exception as exc:  # a probe reports any failure as "down", never raises
        return PartHealth(name, False, {}, _describe(exc))


# Node and broker addresses may carry credentials (a provider's API key in its URL, a Redis
# password): an error is published by its kind, and any other text without addresses or paths.
_ADDRESSES = re.compile(
    r"[a-z][a-z0-9+.-]*://\S+|url: \S+|host='[^']*'|port=\d+|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?"
    r"|\[[0-9a-f:]+\](?::\d+)?|\blocalhost(?::\d+)?",
    re.IGNORECASE,
)


def _describe(exc: Exception) -> str:
    from marketplace.errors import NodeUnavailable

    kind = type(exc).__name__
    if isinstance(exc, NodeUnavailable | OSError | TimeoutError) or "Connection" in kind:
        return f"does not answer ({kind})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _ADDRESSES.sub("[address withheld]", text)
    return f"{kind}: {text}"[:300] if text else kind


HEALTH_CACHE_KEY = "marketplace:system-health"


def system_health() -> dict:
    """{"ok": bool, "parts": {...}}, reused for HEALTH_CACHE_SECONDS: each probe pings every
    node, and the page is open to anyone."""
    health = cache.get(HEALTH_CACHE_KEY)
    if health is None:
        health = _probe_all()
        cache.set(HEALTH_CACHE_KEY, health, settings.HEALTH_CACHE_SECONDS)
    return health


def _probe_all() -> dict:
    """{"ok": bool, "parts": {name: {"ok", "figures", "error"}}}."""
    from chain.models import Deployment

    # Database work stays in this thread (its connection); the network probes run side by side.
    parts = {"database": _run("database", _probe_database)}
    deployments: dict[str, str] = {}
    if parts["database"].ok:
        deployments = {
            d.contract: d.address for d in Deployment.objects.filter(chain_id=settings.CHAIN_ID)
        }
    probes = {
        "redis": (_probe_redis,),
        "celery": (_probe_celery,),
        "chain": (_probe_chain,),
        "ipfs": (_probe_ipfs,),
        "contracts": (_probe_contracts, deployments),
    }
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(_run, name, *call) for name, call in probes.items()}
        parts.update({name: future.result() for name, future in futures.items()})
    return {
        "ok": all(part.ok for part in parts.values()),
        "parts": {name: asdict(part) for name, part in parts.items()},
    }
