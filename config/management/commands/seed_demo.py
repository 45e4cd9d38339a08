"""Demo data for `make demo`: an airline with a badge, a small bakery without one, agents,
customers. Idempotent: running it again changes nothing that is already there.

Each app adds what it shows through a `seed(world)` function in its `demo.py`; config.demo
composes them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from config.demo import demo_seed
from tenancy.demo import DEMO_PASSWORD
from tenancy.spares import spares_refill


class Command(BaseCommand):
    help = "Create (or refresh) the demo businesses, people and data, then print every URL and login."

    def handle(self, *args: Any, **options: Any) -> None:
        world = demo_seed()
        # The demo's businesses took spare schemas: put new ones in their place now, so the
        # first sign-up in the demo is quick even before the worker runs the refill job.
        spares_refill()

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
