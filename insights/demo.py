"""Demo: the airline's service targets and customer ratings, for the Reports page and the
inbox's SLA warnings (runs after collab.demo, which loads the conversations)."""

from __future__ import annotations

import random

from django_tenants.utils import tenant_context

from insights.models import CsatResponse, Cycle, InsightSettings
from tenancy.demo import DemoWorld


def seed(world: DemoWorld) -> None:
    with tenant_context(world.airline):
        InsightSettings.objects.update_or_create(
            pk=1, defaults={"first_response_minutes": 30, "resolution_hours": 24, "csat_enabled": True}
        )
        if CsatResponse.objects.exists():
            return
        rng = random.Random(7)
        ratings = []
        for cycle in Cycle.objects.filter(resolved_at__isnull=False).order_by("pk"):
            if rng.random() < 0.55:
                score = rng.choices([5, 4, 3, 2, 1], weights=[55, 25, 10, 6, 4])[0]
                ratings.append(CsatResponse(cycle=cycle, conversation_id=cycle.conversation_id, score=score))
        CsatResponse.objects.bulk_create(ratings)
        # Ratings arrive soon after the resolve, not all at this moment.
        for rating in CsatResponse.objects.select_related("cycle"):
            assert rating.cycle.resolved_at is not None
            CsatResponse.objects.filter(pk=rating.pk).update(
                created_at=rating.cycle.resolved_at + (rating.cycle.resolved_at - rating.cycle.started_at) / 10
            )
    world.lines.append("Reports (airline): SLA targets 30 min / 24 h, customer ratings on; see /reports/.")
