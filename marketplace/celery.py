import os
import sys

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

from marketplace.config import SettingError  # noqa: E402

try:
    from django.conf import settings

    settings.INSTALLED_APPS  # noqa: B018 - load settings now, so a bad one stops start-up
except SettingError as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    sys.exit(2)

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def load_parsing_libraries(**kwargs) -> None:
    """Each worker process loads the libraries that describe datasets (pyarrow, pandas) when it
    starts, not inside the first listing it gets (they take about a second to import). After
    the fork: Arrow must not share a parent's threads."""
    import datasets.profiling  # noqa: F401


@worker_process_init.connect
def remove_orphan_run_folders(**kwargs) -> None:
    """A worker killed mid-run or mid-listing leaves decrypted rows behind (its scratch folder, a
    decrypted file): the next process to start on this host removes those of processes gone."""
    import logging

    from datasets.uploads import remove_orphan_plaintexts
    from training.pipeline import remove_orphan_workdirs

    for path in remove_orphan_workdirs() + remove_orphan_plaintexts():
        logging.getLogger(__name__).warning("removed what a dead worker left decrypted: %s", path)
