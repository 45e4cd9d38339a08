"""Bring the database up to date: shared schema, public tenant, template, every business, and
the pool of spare schemas (tenancy.spares: spares behind the template are dropped and copied again).

Safe to run again and again: `make demo` and `make test` run it every time.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from tenancy.provisioning import ensure_template_schema
from tenancy.services import public_tenant_ensure
from tenancy.spares import spares_refill


class Command(BaseCommand):
    help = "Migrate the public schema, the tenant template and every business schema; refill the spare schemas."

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options.get("verbosity", 1))
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=max(0, verbosity - 1))
        call_command("createcachetable", verbosity=0)
        public_tenant_ensure()
        ensure_template_schema(verbosity=max(0, verbosity - 1))
        call_command("migrate_schemas", tenant=True, interactive=False, verbosity=max(0, verbosity - 1))
        copied = spares_refill()
        if verbosity > 1 and copied:
            self.stdout.write(f"Copied {copied} spare schema(s).")
        if verbosity:
            self.stdout.write(self.style.SUCCESS("Database ready."))
