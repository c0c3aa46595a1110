"""Dataset pages: browse, upload, my datasets, detail. They call the same selectors and services
as the API; the detail page signs and verifies through the API from the browser."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat

from datasets import selectors, services
from datasets.api import DatasetListApi, upload_size_refusal
from datasets.forms import DatasetUploadForm
from datasets.models import LICENSES, Dataset
from marketplace.errors import ApplicationError
from marketplace.money import eth_to_wei, wei_to_eth
from marketplace.throttling import throttle_refusal

CHART_WIDTH, CHART_HEIGHT = 240, 72


def browse(request):
    params, error = _browse_params(request.GET)
    number = selectors.page_number(params.get("page"), default=1) or 1
    page = selectors.BrowsePage(count=0, number=1, num_pages=1, results=[])
    if error is None:
        try:
            page = selectors.browse_page(params=params, number=number, page_size=20)
        except ApplicationError as exc:
            error = exc.message
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "datasets/browse.html",
        {
            "page": page,
            "datasets": page.results,
            "filters": {**selectors.search_terms(params), "max_price": _max_price_shown(params)},
            "filtered": not selectors.no_filters(params),
            "licenses": LICENSES,
            "orderings": selectors.ORDERINGS.items(),
            "error": error,
            "query": query.urlencode(),
        },
    )


def _browse_params(query: QueryDict) -> tuple[QueryDict, str | None]:
    """The page's query with its price bound, typed in ETH (`max_price`), as the wei the
    selectors filter on (`max_price_wei`); or the reason the bound is not valid."""
    params = query.copy()
    text = params.get("max_price", "").strip()
    if not text:
        return params, None
    try:
        params["max_price_wei"] = str(eth_to_wei(text))
    except ValueError as exc:
        return params, f"The price filter is not valid: {exc}"
    return params, None


def _max_price_shown(params: QueryDict) -> str:
    """The price bound in ETH for the filter's input (a link may still carry it in wei)."""
    if "max_price" in params or not params.get("max_price_wei"):
        return params.get("max_price", "")
    try:
        return wei_to_eth(params["max_price_wei"].strip())
    except ValueError:
        return params["max_price_wei"]


@login_required
def upload(request):
    parents = Dataset.objects.filter(owner=request.user, status=Dataset.Status.LISTED)
    if request.method != "POST":
        return render(
            request,
            "datasets/upload.html",
            {"form": DatasetUploadForm(parents=parents), **_limits()},
        )
    refusal = throttle_refusal(request, DatasetListApi)
    if refusal is not None:
        form = DatasetUploadForm(parents=parents)
        return render(
            request,
            "datasets/upload.html",
            {"form": form, "refusal": refusal.message, **_limits()},
            status=429,
        )
    form = DatasetUploadForm(request.POST, request.FILES, parents=parents)
    refusal = upload_size_refusal(request)
    if refusal is not None:
        form.is_valid()
        form.errors.pop("file", None)
        form.add_error("file", refusal.message)
    elif form.is_valid():
        values = form.cleaned_data
        try:
            dataset = services.dataset_create(
                owner=request.user,
                upload=values["file"],
                original_filename=values["file"].name,
                title=values["title"],
                description=values["description"],
                license=values["license"],
                price_wei=values["price_wei"],
                tags=values["tags"],
                parent_id=values["parent"],
                feature_opt_in=values["feature_opt_in"],
                dp_epsilon_max=values["dp_epsilon_max"],
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("datasets-detail", pk=dataset.pk)
    return render(request, "datasets/upload.html", {"form": form, **_limits()}, status=400)


def _limits() -> dict:
    return {
        "max_upload": filesizeformat(settings.DATASET_MAX_UPLOAD_BYTES),
        "max_columns": settings.DATASET_MAX_COLUMNS,
    }


@login_required
def mine(request):
    page = Paginator(selectors.datasets_of_owner(owner=request.user), 50).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "datasets/mine.html",
        {"page": page, "datasets": [selectors.dataset_summary(d) for d in page]},
    )


def detail(request, pk: int):
    try:
        dataset = selectors.dataset_visible(dataset_id=pk, viewer=request.user)
    except ApplicationError:
        raise Http404("No such dataset.") from None
    body = selectors.dataset_detail(dataset=dataset, viewer=request.user)
    for column in body["columns"]:
        column["chart"] = column_chart(column)
    return render(
        request,
        "datasets/detail.html",
        {
            "dataset": body,
            "live": dataset.status
            in (
                Dataset.Status.PROCESSING,
                Dataset.Status.REGISTERING,
                Dataset.Status.AWAITING_SIGNATURE,
            ),
            "warning_columns": {w.get("column") for w in body["quality_warnings"]},
        },
    )


def column_chart(column: dict) -> dict | None:
    """Bars of an inline SVG: a histogram of numbers, or the most frequent values."""
    histogram = column.get("histogram")
    if histogram and sum(histogram["counts"]):
        counts = histogram["counts"]
        peak, width = max(counts), CHART_WIDTH / len(counts)
        bars = []
        for i, count in enumerate(counts):
            height = round((CHART_HEIGHT - 14) * count / peak, 1)
            low, high = histogram["edges"][i], histogram["edges"][i + 1]
            bars.append(
                {
                    "x": round(i * width + 1, 1),
                    "y": round(CHART_HEIGHT - 14 - height, 1),
                    "w": round(width - 2, 1),
                    "h": height,
                    "title": f"{_short(low)} – {_short(high)}: {count}",
                }
            )
        return {
            "kind": "histogram",
            "bars": bars,
            "low": _short(histogram["edges"][0]),
            "high": _short(histogram["edges"][-1]),
            "sampled": column.get("histogram_sampled", False),
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
        }
    top = column.get("top_values") or []
    if top:
        shown = top[:5]
        peak = max(v["count"] for v in shown) or 1
        rows = []
        for i, item in enumerate(shown):
            rows.append(
                {
                    "y": i * 16,
                    "w": round(max(2, 120 * item["count"] / peak), 1),
                    "label": str(item["value"])[:24],
                    "count": item["count"],
                }
            )
        return {
            "kind": "top",
            "rows": rows,
            "width": CHART_WIDTH,
            "height": 16 * len(rows),
            "exact": column.get("top_values_exact", True),
        }
    return None


def _short(value: float) -> str:
    if value is None:
        return ""
    if abs(value) >= 1e5 or (0 < abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:,.4g}" if value != int(value) else f"{int(value):,}"
