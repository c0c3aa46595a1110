from django.core.management.base import BaseCommand, CommandError

from datasets.demo import DemoRefused, seed_demo


class Command(BaseCommand):
    help = (
        "List scikit-learn's breast-cancer, wine and diabetes sets as demo datasets, in shards "
        "owned by anvil dev accounts 1-3 (development chain only)."
    )

    def handle(self, *args, **options):
        try:
            listed = seed_demo(log=self.stdout.write)
        except DemoRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{len(listed)} demo datasets listed"))
