from django.core.management.base import BaseCommand, CommandError

from datasets.models import Dataset
from datasets.selectors import dataset_verify


class Command(BaseCommand):
    help = (
        "Verify every listed dataset: its bytes on IPFS, its listing and DatasetListed event on "
        "the chain, and our record must agree. Exits with an error when one does not."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="only these datasets")

    def handle(self, *args, ids, **options):
        listed = Dataset.objects.filter(status=Dataset.Status.LISTED).select_related(
            "owner", "parent"
        )
        if ids:
            listed = listed.filter(pk__in=ids)
        failed = 0
        for dataset in listed.order_by("pk").iterator():
            result = dataset_verify(dataset=dataset)
            if result["ok"]:
                self.stdout.write(f"ok      #{dataset.pk} {dataset.title}")
                continue
            failed += 1
            self.stdout.write(self.style.ERROR(f"FAILED  #{dataset.pk} {dataset.title}"))
            for check in result["checks"]:
                if not check["ok"]:
                    self.stdout.write(f"        {check['label']}: {check['detail']}")
        total = listed.count()
        if failed:
            raise CommandError(f"{failed} of {total} listings do not verify")
        self.stdout.write(self.style.SUCCESS(f"all {total} listings verify"))
