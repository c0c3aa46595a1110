import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand

from datasets.models import Dataset
from datasets.services import dataset_row_signatures_index


class Command(BaseCommand):
    help = (
        "Index the row signatures of listings made before the copy check existed (or all of "
        "them with --all), so that copies of them are refused. Reads each file from IPFS and "
        "decrypts it in this process: run it where the workers run."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="only these datasets")
        parser.add_argument(
            "--all", dest="again", action="store_true", help="index indexed listings again too"
        )

    def handle(self, *args, ids, again, **options):
        listings = Dataset.objects.filter(status__in=Dataset.ACTIVE).exclude(cid="")
        if ids:
            listings = listings.filter(pk__in=ids)
        elif not again:
            listings = listings.filter(row_signature_sample__isnull=True)
        indexed = 0
        with tempfile.TemporaryDirectory(prefix="index-row-signatures-") as scratch:
            for dataset_id, title in listings.order_by("pk").values_list("pk", "title"):
                if dataset_row_signatures_index(dataset_id=dataset_id, workdir=Path(scratch)):
                    indexed += 1
                    self.stdout.write(f"indexed #{dataset_id} {title}")
        self.stdout.write(self.style.SUCCESS(f"{indexed} listing(s) indexed"))
