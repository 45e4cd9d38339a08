"""Demo data for `make demo`: an airline with a badge, a small bakery without one, agents,
customers. Idempotent: running it again changes nothing that is already there.

Each app adds what it shows through a `seed(world)` function in its `demo.py`, listed in
DEMO_STEPS, so this command stays one list.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.module_loading import import_string

from tenancy.demo import DEMO_PASSWORD, seed_foundation

DEMO_STEPS: list[str] = [
    "verification.demo.seed",
    "messaging.demo.seed",
    "billing.demo.seed",
    "customers.demo.seed",
]


class Command(BaseCommand):
    help = "Create (or refresh) the demo businesses, people and data, then print every URL and login."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            world = seed_foundation()
            for step in DEMO_STEPS:
                import_string(step)(world)

        public = settings.PARLEY_PUBLIC_URL
        out = self.stdout.write
        out(self.style.SUCCESS("\nParley demo is ready.\n"))
        out(f"  Public site      {public}/")
        out(f"  Pricing          {public}/pricing/")
        out(f"  Platform admin   {public}/admin/")
        for business in (world.airline, world.bakery):
            out(
                f"  {business.display_name:<16} {business.absolute_url('/')}  (inbox: {business.absolute_url('/inbox/')}, chat: {business.absolute_url('/chat/')})"
            )
        out(f"\n  Every login below uses the password: {DEMO_PASSWORD}")
        for role, user in world.users.items():
            out(f"    {role:<18} {user.email}")
        for line in world.lines:
            out(f"  {line}")
        out("")
