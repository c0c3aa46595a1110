"""Identity writes: Sign-In with Ethereum, DID events, profile attributes."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from rest_framework import status
from rest_framework.authtoken.models import Token
from siwe import SiweMessage
from web3 import Web3

from chain.events import ChainEvent
from chain.wrappers import IdentityRegistry, TxRequest
from marketplace.did import ENCRYPTION_KEY_ATTRIBUTE, SERVICE_ATTRIBUTE
from marketplace.errors import refuse
from marketplace.models import DidEvent, LoginNonce, User

SIGNATURE_PATTERN = re.compile(r"^0x[0-9a-fA-F]{130}$")
# What the profile page may publish (the API documents the same patterns). No white space and
# no control character, spelt out so that Python's `re` and the schema's (ECMAScript) regular
# expressions, whose `\s` differ on \x1c-\x1f, \x85 and \ufeff, accept the same endpoints.
SERVICE_ENDPOINT_PATTERN = (
    r"\Ahttps?://[A-Za-z0-9._~%!$&'()*+,;=:@-]+(?:[/?#][^\s\x00-\x1f\x7f-\x9f\ufeff]*)?\Z"
)
ENCRYPTION_KEY_PATTERN = r"\A[A-Za-z0-9+/]{43}=\Z"  # 32 bytes in base64
# A well-formed sign-in whose message or signature does not verify: the credentials are refused.
NOT_VERIFIED = status.HTTP_401_UNAUTHORIZED
CLOCK_SKEW = timedelta(minutes=1)
# How long published DID attributes stay valid (the registry needs a validity).
ATTRIBUTE_VALIDITY_SECONDS = 10 * 365 * 24 * 3600


def login_nonce_issue() -> str:
    """A fresh single-use nonce (alphanumeric, as EIP-4361 requires)."""
    value = secrets.token_hex(16)
    LoginNonce.objects.create(value=value)
    expired = timezone.now() - timedelta(seconds=settings.SIWE_NONCE_TTL_SECONDS)
    LoginNonce.objects.filter(created__lt=expired - timedelta(days=1)).delete()
    return value


def _parse_time(value) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


@transaction.atomic
def identity_sign_in(*, message: str, signature: str) -> User:
    """Verify an EIP-4361 message signed by a wallet and return (creating on first sign-in) its
    user. The message must name this marketplace's public origin (PUBLIC_ORIGIN), whatever Host
    the request came with."""
    origin = settings.PUBLIC_ORIGIN
    domain = urlsplit(origin).netloc
    if not isinstance(message, str) or not message.strip():
        raise refuse("The sign-in message is missing.", "message_missing")
    if not isinstance(signature, str) or not SIGNATURE_PATTERN.match(signature):
        raise refuse(
            "The signature is malformed: expected 0x and 130 hex digits.", "signature_malformed"
        )
    try:
        siwe = SiweMessage.from_message(message=message)
    except Exception:  # the parser raises several error types for malformed text
        raise refuse(
            "The sign-in message is not a valid Sign-In with Ethereum (EIP-4361) message.",
            "message_malformed",
            NOT_VERIFIED,
        ) from None
    if siwe.domain != domain:
        raise refuse(
            f"This message is for {siwe.domain}, not for {domain}: sign in from this site.",
            "wrong_domain",
            NOT_VERIFIED,
        )
    if str(siwe.uri) != origin and not str(siwe.uri).startswith(origin + "/"):
        raise refuse(f"The message's URI {siwe.uri} is not on {origin}.", "wrong_uri", NOT_VERIFIED)
    if siwe.chain_id != settings.CHAIN_ID:
        raise refuse(
            f"The message was signed for chain {siwe.chain_id}; this marketplace runs on chain "
            f"{settings.CHAIN_ID}. Switch your wallet's network and sign again.",
            "wrong_chain",
            NOT_VERIFIED,
        )

    now = timezone.now()
    nonce = LoginNonce.objects.select_for_update().filter(value=siwe.nonce).first()
    if nonce is None:
        raise refuse(
            "Unknown nonce: ask for a new one and sign again.", "unknown_nonce", NOT_VERIFIED
        )
    if nonce.used_at is not None:
        raise refuse(
            "This sign-in message was already used: sign a new one.", "nonce_used", NOT_VERIFIED
        )
    ttl = timedelta(seconds=settings.SIWE_NONCE_TTL_SECONDS)
    if nonce.created + ttl < now:
        raise refuse(
            "The nonce has expired (10 minutes): sign a new message.", "nonce_expired", NOT_VERIFIED
        )

    issued_at = _parse_time(siwe.issued_at)
    if issued_at > now + CLOCK_SKEW:
        raise refuse(
            "The message's issued-at time is in the future.", "issued_in_future", NOT_VERIFIED
        )
    if issued_at + ttl < now:
        raise refuse(
            "The message was issued too long ago: sign a new one.", "message_expired", NOT_VERIFIED
        )
    expiration = _parse_time(siwe.expiration_time)
    if expiration is not None and expiration <= now:
        raise refuse(
            "The sign-in message has expired: sign a new one.", "message_expired", NOT_VERIFIED
        )
    not_before = _parse_time(siwe.not_before)
    if not_before is not None and not_before > now + CLOCK_SKEW:
        raise refuse("The sign-in message is not valid yet.", "not_yet_valid", NOT_VERIFIED)

    try:
        # Recover from the exact text the wallet signed (EIP-191 personal_sign).
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:
        raise refuse(
            "The signature is malformed: it recovers no key.", "signature_malformed", NOT_VERIFIED
        ) from None
    if signer != siwe.address:
        raise refuse(
            f"The signature was not made by {siwe.address}.",
            "wrong_signer",
            NOT_VERIFIED,
        )

    LoginNonce.objects.filter(pk=nonce.pk, used_at__isnull=True).update(used_at=now)
    return user_for_address(address=siwe.address)


def user_for_address(*, address: str) -> User:
    """The user of a wallet address, created on first sight (a wallet user has no password)."""
    address = Web3.to_checksum_address(address)
    user = User.objects.filter(address=address).first()
    if user is None:
        user = User(username=address, address=address)
        user.set_unusable_password()
        user.full_clean()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:  # created meanwhile by another request
            user = User.objects.get(address=address)
    return user


@transaction.atomic
def api_token_for(user: User) -> str:
    """A new API token for `user` (a sign-in never hands out an earlier one); it lasts
    API_TOKEN_TTL_DAYS."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user).key


def api_token_revoke(user: User) -> None:
    Token.objects.filter(user=user).delete()


def profile_update(*, user: User, display_name: str) -> User:
    user.display_name = display_name.strip()
    user.full_clean()
    user.save(update_fields=["display_name"])
    return user


# --- DID attributes published from the profile page --------------------------------------------


def did_attribute_request(*, user: User, kind: str, value: str) -> TxRequest:
    """The `setAttribute` transaction the user sends from their own wallet."""
    if kind == "service":
        endpoint = (value or "").strip()
        if not re.match(SERVICE_ENDPOINT_PATTERN, endpoint):
            raise refuse("The service endpoint must be an http(s) URL.", "bad_endpoint")
        if len(endpoint) > 500:
            raise refuse("The service endpoint is longer than 500 characters.", "bad_endpoint")
        name, raw = SERVICE_ATTRIBUTE, endpoint.encode()
    elif kind == "encryption_key":
        key = (value or "").strip()
        raw = base64.b64decode(key) if re.match(ENCRYPTION_KEY_PATTERN, key) else b""
        if len(raw) != 32:
            raise refuse(
                "The encryption key must be an X25519 public key: 32 bytes in base64.", "bad_key"
            )
        name = ENCRYPTION_KEY_ATTRIBUTE
    else:
        raise refuse("Unknown attribute: choose service or encryption_key.", "bad_kind")
    registry = IdentityRegistry.for_requests()
    return registry.set_attribute_request(
        user.address, name.encode(), raw, ATTRIBUTE_VALIDITY_SECONDS
    )


# --- DID events (from the indexer and from the resolver's event walk) ---------------------------


def did_event_record(w3: Web3, event: ChainEvent, block_timestamp: int | None = None) -> None:
    """Store one ERC-1056 event; a log seen twice is stored once."""
    if block_timestamp is None:
        block_timestamp = w3.eth.get_block(event.block_number)["timestamp"]
    DidEvent.record_once(
        tx_hash=event.tx_hash, log_index=event.log_index, block_number=event.block_number,
        block_timestamp=block_timestamp, kind=event.name, args=event.args,
        identity=Web3.to_checksum_address(event.args["identity"]),
    )  # fmt: skip


def did_refresh(*, registry: IdentityRegistry, identity: str) -> None:
    """Bring the stored events of `identity` up to the chain by the did:ethr event walk: start at
    the registry's `changed(identity)` block and follow `previousChange` back to the newest block
    we already hold. Nothing is walked when nothing changed."""
    from chain.client import deployed_addresses
    from chain.events import decode_log, logs_between

    w3 = registry.w3
    block = registry.changed(identity)
    known = DidEvent.objects.filter(identity=identity).aggregate(m=Max("block_number"))["m"] or 0
    topic = "0x" + "00" * 12 + identity[2:].lower()
    addresses = deployed_addresses()
    found: list[tuple[ChainEvent, int]] = []
    while block > known:
        logs = logs_between(
            w3, address=registry.address, topics=[None, topic], from_block=block, to_block=block
        )
        events = [e for e in (decode_log(w3, log, addresses) for log in logs) if e is not None]
        timestamp = w3.eth.get_block(block)["timestamp"]
        found.extend((event, timestamp) for event in events)
        earlier = [e.args["previousChange"] for e in events if e.args["previousChange"] < block]
        block = min(earlier, default=0)
    # All at once, so an interrupted walk leaves no gap below a stored block.
    with transaction.atomic():
        for event, timestamp in found:
            did_event_record(w3, event, timestamp)
