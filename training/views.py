from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from datasets.selectors import SUMMARY_FIELDS, dataset_list
from marketplace.errors import ApplicationError
from training import selectors
from training.catalog import MODELS


@login_required
def commission(request):
    query = request.GET.get("q", "").strip()
    # The browse page's search; with the columns, for the shared-column suggestions.
    listed = dataset_list(params={"search": query}).only(
        *SUMMARY_FIELDS, "columns", "dp_epsilon_max"
    )
    page = Paginator(listed, 25).get_page(request.GET.get("page"))
    preselected = {int(i) for i in request.GET.getlist("dataset") if i.isdigit()}
    return render(
        request,
        "training/commission.html",
        {"page": page, "query": query, "models": MODELS, "preselected": preselected},
    )


@login_required
def run_page(request, run_id: int):
    try:
        run = selectors.run_for(request.user, run_id)
    except ApplicationError as exc:
        return render(
            request, "training/not_allowed.html", {"message": exc.message}, status=exc.status_code
        )
    return render(
        request,
        "training/run.html",
        {
            "run": run,
            "is_buyer": run.buyer_id == request.user.pk,
            "detail": selectors.run_detail(run),
            "model_label": run.model.replace("_", " "),
        },
    )


@login_required
def my_runs(request):
    page = Paginator(selectors.runs_of_buyer(request.user), 20).get_page(request.GET.get("page"))
    return render(request, "training/my_runs.html", {"page": page})


@login_required
def earnings(request):
    return render(request, "training/earnings.html")
