"""Show, refill or empty the pool of spare business schemas (tenancy.spares)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tenancy.spares import spares_discard_all, spares_refill, spares_status


class Command(BaseCommand):
    help = (
        "Refill the pool of spare business schemas up to PARLEY_SPARE_SCHEMAS (or --size), dropping "
        "spares behind the template's migrations; --discard drops every spare."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", type=int, default=None, help="fill up to this many (default: the setting)")
        parser.add_argument("--discard", action="store_true", help="drop every spare schema instead")
        parser.add_argument("--status", action="store_true", help="only show the pool")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["discard"]:
            self.stdout.write(f"Dropped {spares_discard_all()} spare schema(s).")
        elif not options["status"]:
            self.stdout.write(f"Copied {spares_refill(size=options['size'])} spare schema(s).")
        status = spares_status()
        self.stdout.write(
            f"Spare schemas: {status['current']} ready, {status['spares'] - status['current']} behind the "
            f"template; pool size {status['size']} (PARLEY_SPARE_SCHEMAS)."
        )
