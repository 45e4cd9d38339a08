"""What the tenant core announces, for the feature apps to act on (the core knows no app).

`business_suspended` is sent inside the suspending transaction; a receiver that acts outside the
database defers to `transaction.on_commit` (messaging closes the business's open sockets)."""

from __future__ import annotations

from django.dispatch import Signal

business_suspended = Signal()  # sender: Business class; kwargs: business
