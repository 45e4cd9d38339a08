"""What accounts announce, for the feature apps to act on (accounts knows no tenant app).

`seat_removed` is sent inside the removing transaction, after the membership row is deleted."""

from __future__ import annotations

from django.dispatch import Signal

seat_removed = Signal()  # sender: Membership class; kwargs: business, user_id
