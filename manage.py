#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    if sys.argv[1:2] == ["run_validator"]:  # a node of its own: no database, broker or master key
        os.environ["MARKETPLACE_VALIDATOR_NODE"] = "1"
    from django.core.management import execute_from_command_line

    from marketplace.config import SettingError

    try:
        execute_from_command_line(sys.argv)
    except SettingError as exc:
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
