"""The IPFS node, spoken to over its standard RPC API (/api/v0), so any kubo or js-ipfs works."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from ipaddress import ip_address
from urllib.parse import urlparse

from django.conf import settings

from marketplace.errors import NodeUnavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ipfshttpclient


class IpfsUnavailable(NodeUnavailable):
    """The IPFS node does not answer (a transient failure: retry later)."""

    part = "ipfs"


def api_multiaddr(api_url: str) -> str:
    parsed = urlparse(api_url)
    host = parsed.hostname or "127.0.0.1"
    try:
        family = "ip6" if ip_address(host).version == 6 else "ip4"
    except ValueError:
        family = "dns"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"/{family}/{host}/tcp/{port}/{parsed.scheme}"


@contextmanager
def ipfs_client(timeout: float = 60.0):
    # ipfshttpclient.connect() rejects current daemons by version; the Client itself works.
    client = ipfshttpclient.Client(api_multiaddr(settings.IPFS_API_URL), timeout=timeout)
    try:
        yield client
    finally:
        client.close()
