"""The demo, composed: tenancy's businesses and people first, then what each app shows.

Each app owns its demo data in its own `demo.py` (a `seed(world)` step); this module is the one
place that knows every app, so no app has to reach the others.
"""

from __future__ import annotations

from django.db import transaction

from assignment import demo as assignment_demo
from attachments import demo as attachments_demo
from billing import demo as billing_demo
from collab import demo as collab_demo
from customers import demo as customers_demo
from insights import demo as insights_demo
from messaging import demo as messaging_demo
from notifications import demo as notifications_demo
from tenancy.demo import DemoWorld, seed_foundation
from verification import demo as verification_demo


def demo_seed() -> DemoWorld:
    """Create (or refresh) every app's demo data in one transaction; idempotent."""
    with transaction.atomic():
        world = seed_foundation()
        verification_demo.seed(world)
        messaging_demo.seed(world)
        collab_demo.seed(world)  # the airline's busy inbox, after messaging's hand-written threads
        insights_demo.seed(world)  # ratings of the conversations collab loaded
        assignment_demo.seed(world)  # after messaging: its queue joins the airline's conversations
        billing_demo.seed(world)
        notifications_demo.seed(world)
        attachments_demo.seed(world)  # after messaging: rich messages join its conversations
        customers_demo.seed(world)  # after messaging: the privacy centre needs conversations
    return world
