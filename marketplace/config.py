"""Reading settings from the environment: every problem is one line naming the setting."""

from __future__ import annotations

import base64
import math
import os
import secrets
from pathlib import Path
from urllib.parse import urlparse


class SettingError(Exception):
    """A missing or malformed setting; the message names it and says what it expects."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise SettingError(f"{name} is not set: {name} is required")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name}={value!r} is malformed: expected 1/0, true/false, yes/no or on/off")


def env_int(
    name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise SettingError(f"{name} is not set: expected an integer")
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is malformed: expected an integer") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={raw!r} is out of range: expected an integer >= {minimum}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={raw!r} is out of range: expected an integer <= {maximum}")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SettingError(f"{name}={raw!r} is malformed: expected a number")
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={raw!r} is out of range: expected a number >= {minimum}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={raw!r} is out of range: expected a number <= {maximum}")
    return value


def env_url(name: str, default: str | None, *, schemes: tuple[str, ...]) -> str:
    value = env_str(name, default)
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise SettingError(
            f"{name}={value!r} is malformed: expected a URL like {schemes[0]}://host:port"
        )
    try:
        _ = parsed.port
    except ValueError:
        raise SettingError(f"{name}={value!r} is malformed: the port is not a number") from None
    return value


def env_private_key(name: str, default: str | None) -> str:
    value = env_str(name, default)
    digits = value[2:] if value.startswith("0x") else value
    try:
        valid = len(digits) == 64 and int(digits, 16) > 0
    except ValueError:
        valid = False
    if not valid:
        raise SettingError(f"{name} is malformed: expected a 32-byte hex private key (0x + 64 hex)")
    return "0x" + digits.lower()


def signing_keys_check(operator: str, admin: str, *, production: bool) -> None:
    """Check the signing keys the environment holds (a worker's; the web holds none): each is
    well-formed, and in production the admin and the operator are different keys. Nothing is
    kept: the transaction sender reads its key when it first signs."""
    keys = {name: env_private_key(name, None) for name in (operator, admin) if os.environ.get(name)}
    if production and len(keys) == 2 and keys[operator] == keys[admin]:
        raise SettingError(
            f"{operator} and {admin} are the same key: the operator and the admin must be "
            "different keys"
        )


def _decode_master_key(name: str, value: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise SettingError(
            f"{name} is malformed: expected 32 random bytes in base64 (44 characters)"
        )
    return key


def master_key(name: str, *, dev_key_file: Path | None) -> bytes:
    """The data-encryption master key: from the environment, or a generated local file in dev."""
    value = os.environ.get(name)
    if value:
        return _decode_master_key(name, value)
    if dev_key_file is None:
        raise SettingError(f"{name} is not set: expected 32 random bytes in base64 (44 characters)")
    if not dev_key_file.exists():
        dev_key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dev_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return _decode_master_key(f"{name} (from {dev_key_file})", dev_key_file.read_text())


def env_rates(name: str, known: dict[str, str]) -> dict[str, str]:
    """ "scope=count/period,..." overriding some of `known` (period: s, min, hour, day)."""
    value = env_str(name, "")
    rates: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        scope, _, rate = item.partition("=")
        count, _, period = rate.strip().partition("/")
        if scope.strip() not in known or not count.isdigit() or period not in PERIODS:
            raise SettingError(
                f"{name}: {item!r} is malformed: expected one of {', '.join(known)} "
                "= count/period (s, min, hour or day)"
            )
        rates[scope.strip()] = f"{int(count)}/{period}"
    return rates


PERIODS = ("s", "sec", "min", "hour", "day")
