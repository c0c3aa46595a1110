"""Identity reads used by the API and the pages."""

from __future__ import annotations

from django.conf import settings
from rest_framework import status

from chain.wrappers import IdentityRegistry
from marketplace.did import InvalidDid, build_document, did_for, parse_did
from marketplace.errors import ApplicationError
from marketplace.models import DidEvent, User


def identity_did(user: User) -> str | None:
    return did_for(user.address, settings.CHAIN_ID) if user.address else None


def identity_profile(user: User) -> dict:
    return {
        "did": identity_did(user),
        "address": user.address,
        "display_name": user.display_name,
        "joined": user.date_joined.isoformat(),
    }


def did_document(did: str) -> tuple[dict, dict]:
    """(DID document, metadata) for a did:ethr of this chain, from stored registry events,
    refreshed first by the event walk when the registry says the identity changed since. With
    the chain down there is no answer: stored events alone may miss a change of owner."""
    from marketplace.services import did_refresh

    try:
        parsed = parse_did(did)
    except InvalidDid as exc:
        raise ApplicationError(str(exc), {"code": "invalid_did"}) from None
    if parsed.chain_id != settings.CHAIN_ID:
        raise ApplicationError(
            "This marketplace resolves did:ethr identifiers of chain "
            f"{hex(settings.CHAIN_ID)} only.",
            {"code": "unsupported_network"},
            status_code=status.HTTP_404_NOT_FOUND,
        )
    registry = IdentityRegistry.deployed()
    did_refresh(registry=registry, identity=parsed.address)
    now = registry.w3.eth.get_block("latest")["timestamp"]  # validity is judged in chain time
    events = list(
        DidEvent.objects.filter(identity=parsed.address).values(
            "kind", "args", "block_number", "block_timestamp"
        )
    )
    document, metadata = build_document(
        did=did_for(parsed.address, settings.CHAIN_ID),
        identity=parsed.address,
        chain_id=settings.CHAIN_ID,
        events=events,
        now=now,
    )
    return document, metadata
