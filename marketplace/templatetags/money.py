from django import template

from marketplace.money import wei_to_eth

register = template.Library()


@register.filter
def eth(wei) -> str:
    """Wei as an exact number of ETH ("0.015"); empty for a missing or malformed amount."""
    if wei is None or wei == "":
        return ""
    try:
        return wei_to_eth(wei)
    except ValueError:
        return ""
