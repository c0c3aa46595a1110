from datetime import datetime

from django import template

register = template.Library()


@register.filter
def short_address(address) -> str:
    return f"{address[:6]}…{address[-4:]}" if address and len(address) > 12 else address or ""


@register.filter
def iso_date(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


@register.filter
def number(value) -> str:
    """A statistic for display: integers with separators, floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.4g}"
    return str(value)
