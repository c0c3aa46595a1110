from django.conf import settings
from django.shortcuts import render

from validators import selectors


def validators_page(request):
    """The staked validators (public): who re-computes runs, their stakes, attestations, slashes,
    and how to run one."""
    return render(
        request,
        "validators/list.html",
        {
            "validators": selectors.validators_list(),
            "public_origin": settings.PUBLIC_ORIGIN,
        },
    )
