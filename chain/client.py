"""The one way the app reaches the chain: Web3 from settings, ABIs from the committed build
artifacts, addresses from the deployment record."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import requests
from django.conf import settings
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.types import RPCEndpoint, RPCResponse

from marketplace.errors import NodeUnavailable

BUILD_DIR = Path(__file__).resolve().parent / "contracts" / "build"
PRODUCT_CONTRACTS = ("IdentityRegistry", "DatasetRegistry", "TrainingEscrow")


class ChainUnavailable(NodeUnavailable):
    """The RPC endpoint does not answer (a transient failure: retry later)."""

    part = "chain"


class ChainMisconfigured(NodeUnavailable):
    """The node answers for another chain id, or our contracts are not deployed on it."""

    part = "chain"
    code = "node_misconfigured"

    @property
    def public_message(self) -> str:
        return (
            "The marketplace is not connected to its blockchain as configured, so this cannot "
            "be done right now."
        )


@functools.cache
def load_artifact(name: str) -> dict:
    return json.loads((BUILD_DIR / f"{name}.json").read_text())


def bytecode_sha256(name: str) -> str:
    return hashlib.sha256(load_artifact(name)["bytecode"].encode()).hexdigest()


def _unanswered(exc: requests.RequestException) -> bool:
    """A transport failure, or an answer from a gateway that says the node is not there."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    status = getattr(exc.response, "status_code", None)
    return (
        isinstance(exc, requests.HTTPError)
        and status is not None
        and (status >= 500 or status == 429)
    )


class OutageAwareHTTPProvider(Web3.HTTPProvider):
    """An HTTPProvider whose transport failures are ChainUnavailable, so that every chain read,
    not only the first, answers an outage the same way."""

    def make_request(self, method: RPCEndpoint, params) -> RPCResponse:
        try:
            return super().make_request(method, params)
        except requests.RequestException as exc:
            if _unanswered(exc):
                raise ChainUnavailable(
                    f"the chain node at {self.endpoint_uri} does not answer {method}: {exc}"
                ) from exc
            raise

    def make_batch_request(self, batch_requests):
        try:
            return super().make_batch_request(batch_requests)
        except requests.RequestException as exc:
            if _unanswered(exc):
                raise ChainUnavailable(
                    f"the chain node at {self.endpoint_uri} does not answer a batch: {exc}"
                ) from exc
            raise


def web3_for(rpc_url: str, timeout: float = 10.0) -> Web3:
    return Web3(OutageAwareHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def get_web3(*, timeout: float = 10.0) -> Web3:
    """A Web3 for the configured node, after checking it serves the configured chain."""
    w3 = web3_for(settings.CHAIN_RPC_URL, timeout)
    try:
        chain_id = w3.eth.chain_id
    except ChainUnavailable:
        raise
    except Exception as exc:  # bad JSON, an endpoint that is not a node
        raise ChainUnavailable(
            f"the chain node at {settings.CHAIN_RPC_URL} does not answer"
        ) from exc
    if chain_id != settings.CHAIN_ID:
        raise ChainMisconfigured(
            f"the node at {settings.CHAIN_RPC_URL} serves chain {chain_id}, "
            f"but CHAIN_ID is {settings.CHAIN_ID}"
        )
    return w3


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    return w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name)["abi"])


def deployed_addresses() -> dict[str, str]:
    """Contract name -> checksummed address on the configured chain."""
    from chain.models import Deployment

    return {
        d.contract: to_checksum_address(d.address)
        for d in Deployment.objects.filter(chain_id=settings.CHAIN_ID)
    }


def deployed_contract(w3: Web3, name: str) -> Contract:
    address = deployed_addresses().get(name)
    if address is None:
        raise ChainMisconfigured(
            f"{name} is not deployed on chain {settings.CHAIN_ID}: run manage.py deploy_contracts"
        )
    return contract_at(w3, name, address)


@functools.cache
def _error_selectors() -> dict[bytes, tuple[str, list[str]]]:
    selectors = {}
    for name in PRODUCT_CONTRACTS:
        for item in load_artifact(name)["abi"]:
            if item["type"] == "error":
                types = [i["type"] for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                selectors[keccak(text=signature)[:4]] = (item["name"], types)
    return selectors


def decode_revert(exc: Exception) -> tuple[str, tuple]:
    """The custom error name and arguments behind a revert, e.g. ("WrongPayment", (10, 5))."""
    from eth_abi import decode

    data = getattr(exc, "data", None)
    if isinstance(exc, (ContractCustomError, ContractLogicError)) and isinstance(data, str):
        raw = bytes.fromhex(data.removeprefix("0x"))
        match = _error_selectors().get(raw[:4])
        if match:
            name, types = match
            return name, tuple(decode(types, raw[4:]))
    return type(exc).__name__, (str(exc),)
