"""Building and signing Sign-In with Ethereum messages the way wallet.js does."""

from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_account.messages import encode_defunct

# anvil dev accounts 1 and 2 (test only).
ALICE_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
MALLORY_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
ALICE = Account.from_key(ALICE_KEY).address
MALLORY = Account.from_key(MALLORY_KEY).address


def siwe_text(
    *,
    nonce: str,
    address: str = ALICE,
    domain: str = "testserver",
    uri: str = "http://testserver",
    chain_id: int = 31337,
    issued_at: datetime | None = None,
    expiration: datetime | None = None,
) -> str:
    issued_at = issued_at or datetime.now(UTC)
    expiration = expiration or issued_at + timedelta(minutes=10)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"  # noqa: E731
    return "\n".join(
        [
            f"{domain} wants you to sign in with your Ethereum account:",
            address,
            "",
            "Sign in to the data marketplace.",
            "",
            f"URI: {uri}",
            "Version: 1",
            f"Chain ID: {chain_id}",
            f"Nonce: {nonce}",
            f"Issued At: {iso(issued_at)}",
            f"Expiration Time: {iso(expiration)}",
        ]
    )


def sign(text: str, key: str = ALICE_KEY) -> str:
    return "0x" + Account.sign_message(encode_defunct(text=text), key).signature.hex()
