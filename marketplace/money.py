"""Amounts as people read and type them: ETH as an exact decimal string, wei as an integer.

Integer arithmetic only, so no amount is ever rounded on its way between a page and the chain.
"""

from __future__ import annotations

import re
from decimal import Decimal

from marketplace.fields import MAX_WEI

ETH_DECIMALS = 18
WEI_PER_ETH = 10**ETH_DECIMALS

_ETH_AMOUNT = re.compile(r"(?P<whole>[0-9]*)(?:\.(?P<fraction>[0-9]*))?", re.ASCII)
_EXPONENT = re.compile(r"[0-9]*\.?[0-9]*[eE][+-]?[0-9]+", re.ASCII)
_EXAMPLE = "Enter an amount in ETH with a dot for decimals, like 0.015."


def eth_to_wei(text: str) -> int:
    """'0.015' -> 15000000000000000. Raises ValueError with a message a user can read for an
    empty, negative, exponent, over-precise, too large or otherwise malformed amount."""
    if not isinstance(text, str):
        raise ValueError(_EXAMPLE)
    text = text.strip()
    if not text:
        raise ValueError("Enter an amount in ETH.")
    if text.startswith("-"):
        raise ValueError("The amount cannot be negative.")
    if _EXPONENT.fullmatch(text):
        raise ValueError("Write the amount out in full, without an exponent (0.015, not 1.5e-2).")
    match = _ETH_AMOUNT.fullmatch(text)
    if match is None or not (match["whole"] or match["fraction"]):
        raise ValueError(_EXAMPLE)
    fraction = match["fraction"] or ""
    if len(fraction) > ETH_DECIMALS:
        raise ValueError(
            f"ETH has at most {ETH_DECIMALS} decimals (1 wei = 0.000000000000000001 ETH)."
        )
    # Checked on the digits first: int() of a very long string is slow, then refused.
    if len(match["whole"].lstrip("0")) > len(str(MAX_WEI)) - ETH_DECIMALS:
        raise ValueError("The amount is too large.")
    fraction = fraction.ljust(ETH_DECIMALS, "0")
    wei = int(match["whole"] or "0") * WEI_PER_ETH + int(fraction)
    if wei > MAX_WEI:
        raise ValueError("The amount is too large.")
    return wei


def wei_to_eth(wei: int | str | Decimal) -> str:
    """15000000000000000 -> '0.015': exact, without trailing zeros. Raises ValueError for
    anything that is not a whole number of wei."""
    if isinstance(wei, bool):
        raise ValueError("An amount of wei is a whole number.")
    if isinstance(wei, Decimal):
        if not wei.is_finite() or wei != wei.to_integral_value():
            raise ValueError("An amount of wei is a whole number.")
        wei = int(wei)
    elif isinstance(wei, str):
        if not re.fullmatch(r"-?[0-9]+", wei.strip(), re.ASCII):
            raise ValueError("An amount of wei is a whole number.")
        wei = int(wei)
    elif not isinstance(wei, int):
        raise ValueError("An amount of wei is a whole number.")
    sign = "-" if wei < 0 else ""
    whole, fraction = divmod(abs(wei), WEI_PER_ETH)
    digits = str(fraction).rjust(ETH_DECIMALS, "0").rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
