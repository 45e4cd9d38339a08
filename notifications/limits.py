"""Sending limits: a per-business throughput limit, the messaging tier (unique customers reached
by business-initiated messages per rolling 24 hours) and the quality rating (how many of them
blocked or reported the business over 7 days). Read-mostly: the checks raise NotificationError."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.models import Block, Report
from messaging.models import Contact, Conversation, Message
from notifications.errors import ErrorCode, NotificationError
from template_reviews.selectors import sending_limits
from tenancy.models import Business

TIER_UNVERIFIED = 250
TIER_VERIFIED = 2_000
TIER_BADGE = 10_000
TIER_WINDOW = timedelta(hours=24)
QUALITY_WINDOW = timedelta(days=7)
# Below this many recipients a few blocks say little about a business: the rating stays green.
QUALITY_MIN_RECIPIENTS = 20
QUALITY_YELLOW = 0.02  # more than 2% of recipients blocked or reported
QUALITY_RED = 0.05

QUALITY_LABELS = {"green": gettext_lazy("Green"), "yellow": gettext_lazy("Yellow"), "red": gettext_lazy("Red")}


# (messages per second, tier override or None): template_reviews.selectors.sending_limits, which a
# delivery job reads once and hands to each check instead of a query per check.
Limits = tuple[int, int | None]


def throughput_take(
    *, business: Business, count: int = 1, now: float | None = None, limits: Limits | None = None
) -> int | None:
    """Count `count` messages against this second's allowance; None if allowed, else the seconds
    to wait. A fixed one-second window in the shared cache (Redis), keyed by the schema."""
    per_second, _tier = limits or sending_limits(business=business)
    second = int(now if now is not None else time.time())
    key = f"t.{business.schema_name}.sendrate.{second}"
    # The key only matters during its second; it outlives it by a margin so a slow burst (or a
    # frozen test clock) never sees its count vanish while the second is still current.
    cache.add(key, 0, timeout=60)
    try:
        used = cache.incr(key, count)
    except ValueError:  # expired between add and incr
        cache.set(key, count, timeout=60)
        used = count
    if used > per_second:
        return 1
    return None


def throughput_check(*, business: Business) -> None:
    retry_after = throughput_take(business=business)
    if retry_after is not None:
        per_second, _tier = sending_limits(business=business)
        raise NotificationError(
            ErrorCode.RATE_LIMITED,
            _("Your business may send %(n)d messages a second. Slow down and retry.") % {"n": per_second},
            retry_after=retry_after,
        )


def tier_limit(*, business: Business, limits: Limits | None = None) -> int:
    _rate, override = limits or sending_limits(business=business)
    if override is not None:
        return override
    if business.badge_visible:
        return TIER_BADGE
    if business.phone_verified_at is not None:
        return TIER_VERIFIED
    return TIER_UNVERIFIED


def _reached_since(since: object) -> Q:
    return Q(kind=Message.Kind.TEMPLATE, direction=Message.Direction.OUTBOUND, created_at__gte=since)


def customers_reached(*, since: object) -> set[int]:
    return set(
        Message.objects.filter(_reached_since(since))
        .values_list("conversation__contact__customer_id", flat=True)
        .distinct()
    )


def tier_check(*, business: Business, customer_id: int) -> None:
    """A customer not yet reached in the last 24 hours counts against the tier. Call inside the
    transaction that then writes the message: the tier's lock is held until it commits."""
    allowance = TierAllowance.now(business=business, customer_ids=[customer_id])
    if not allowance.take(customer_id):
        raise NotificationError(ErrorCode.TIER_LIMIT, allowance.message(), retry_after=3600)


# The tier's advisory lock, per business: pg_advisory_xact_lock(TIER_LOCK, business id) (the
# two-key form, so pg_locks names it by its keys).
TIER_LOCK = 0x54494552  # "TIER"
# What a writer holding the tier's lock shared may add: at most this many new customers. A
# delivery chunk is at most 100 notifications (BATCH_CHUNK); a bigger one takes the lock alone.
TIER_SHARE_MAX = 100

_TIER_COUNT_SQL = (
    "SELECT count(DISTINCT ct.customer_id), "
    "array_agg(DISTINCT ct.customer_id) FILTER (WHERE ct.customer_id = ANY(%s::bigint[])) "
    f"FROM {Message._meta.db_table} m JOIN {Conversation._meta.db_table} c ON c.id = m.conversation_id "
    f"JOIN {Contact._meta.db_table} ct ON ct.id = c.contact_id "
    "WHERE m.kind = %s AND m.direction = %s AND m.created_at >= %s"
)
# The writers holding the business's tier lock shared now (this one among them).
_TIER_SHARERS_SQL = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 2"
)


def _tier_key(business: Business) -> int:
    # An int4 key; two businesses sharing one (ids 2^31 apart) only wait for each other.
    return int(business.pk) & 0x7FFFFFFF


@dataclass
class TierAllowance:
    """The tier for a group of sends decided together: customers already reached are free,
    each new one takes a place until the limit.

    Exact under concurrency (two delivery workers' chunks of one business, an API send beside
    them): read inside the transaction that writes the group's messages, under the business's
    tier lock, held until that transaction ends. Far below the tier the lock is shared, so
    writers do not wait for each other: a writer that takes it shared adds at most
    TIER_SHARE_MAX new customers, and goes ahead only if the customers reached (committed) plus
    its own new ones plus TIER_SHARE_MAX for every other writer holding the lock still fit the
    tier. Every writer holding it when that count is read is in the margin, every one that
    committed before is in the count, and every one that takes it later counts this one in its
    own margin, so together they never pass the tier. Near the tier (or for a group of more
    new customers) the writer takes the lock alone — it waits for the shared writers to commit
    and then counts exactly — and writers after it wait for it."""

    limit: int
    reached: set[int]  # of the customers asked about (all of them, when none were named)
    count: int  # customers reached in the window, all told

    @classmethod
    def now(
        cls, *, business: Business, customer_ids: Collection[int] | None = None, limits: Limits | None = None
    ) -> TierAllowance:
        """Read once per group. Naming the group's customers reads which of them were reached
        and how many were in all (one aggregate), instead of every reached customer's id: a
        business near a high tier would otherwise load tens of thousands of ids per job. Named,
        it must run in the writing transaction (it takes the tier's lock, see above)."""
        limit = tier_limit(business=business, limits=limits)
        since = timezone.now() - TIER_WINDOW
        if customer_ids is None:
            reached = customers_reached(since=since)
            return cls(limit, reached, len(reached))
        if not connection.in_atomic_block:
            raise RuntimeError("the tier is read inside the transaction that writes the messages")
        asked = list(customer_ids)
        key = [TIER_LOCK, _tier_key(business)]
        count_params: list[Any] = [asked, Message.Kind.TEMPLATE, Message.Direction.OUTBOUND, since]
        # Raw: compiling this aggregate through the ORM cost more than running it, every chunk.
        with connection.cursor() as cursor:
            # Shared first, in a savepoint: a writer that then finds itself too near the tier
            # rolls the shared lock back (a transaction's advisory lock is otherwise held to the
            # end) and takes it alone; two writers upgrading in place would deadlock.
            cursor.execute("SAVEPOINT parley_tier")
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", key)
            cursor.execute(_TIER_SHARERS_SQL, key)
            (sharers,) = cursor.fetchone() or (1,)
            # Counted after the sharers: a writer that commits in between is in both (safe).
            cursor.execute(_TIER_COUNT_SQL, count_params)
            count, among = cursor.fetchone() or (0, None)
            new = len(set(asked) - set(among or ()))
            if new <= TIER_SHARE_MAX and int(count) + new + (int(sharers) - 1) * TIER_SHARE_MAX <= limit:
                cursor.execute("RELEASE SAVEPOINT parley_tier")
            else:
                cursor.execute("ROLLBACK TO SAVEPOINT parley_tier")
                cursor.execute("RELEASE SAVEPOINT parley_tier")
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", key)
                cursor.execute(_TIER_COUNT_SQL, count_params)
                count, among = cursor.fetchone() or (0, None)
        return cls(limit, set(among or ()), int(count))

    def take(self, customer_id: int) -> bool:
        if customer_id in self.reached:
            return True
        if self.count >= self.limit:
            return False
        self.reached.add(customer_id)
        self.count += 1
        return True

    def message(self) -> str:
        return _tier_message(self.limit)


def _tier_message(limit: int) -> str:
    return _(
        "Your tier allows business-initiated messages to %(n)d different customers per 24 hours. "
        "Verify your number or earn the badge to reach more, or ask Parley support."
    ) % {"n": limit}


@dataclass(frozen=True)
class Quality:
    rating: str  # green, yellow, red
    recipients: int
    complaints: int

    @property
    def label(self) -> str:
        return str(QUALITY_LABELS[self.rating])


def quality_rating(*, business: Business) -> Quality:
    """Share of the customers reached over 7 days who blocked or reported the business since."""
    since = timezone.now() - QUALITY_WINDOW
    reached = customers_reached(since=since)
    if not reached:
        return Quality("green", 0, 0)
    blocked = set(
        Block.objects.filter(business=business, customer_id__in=reached, created_at__gte=since).values_list(
            "customer_id", flat=True
        )
    )
    reported = set(
        Report.objects.filter(business=business, customer_id__in=reached, created_at__gte=since).values_list(
            "customer_id", flat=True
        )
    )
    complaints = len(blocked | reported)
    share = complaints / len(reached)
    if len(reached) < QUALITY_MIN_RECIPIENTS:
        rating = "green"
    elif share > QUALITY_RED:
        rating = "red"
    elif share > QUALITY_YELLOW:
        rating = "yellow"
    else:
        rating = "green"
    return Quality(rating, len(reached), complaints)


def quality_rating_cached(*, business: Business) -> Quality:
    key = f"t.{business.schema_name}.quality"
    cached = cache.get(key)
    if isinstance(cached, tuple) and len(cached) == 3:
        return Quality(*cached)
    quality = quality_rating(business=business)
    cache.set(key, (quality.rating, quality.recipients, quality.complaints), timeout=60)
    return quality


def marketing_check(*, business: Business) -> None:
    """Red quality pauses marketing templates until complaints fall back."""
    if quality_rating_cached(business=business).rating == "red":
        raise NotificationError(
            ErrorCode.TEMPLATE_PAUSED,
            _(
                "Marketing templates are paused: too many customers blocked or reported your business "
                "in the last 7 days (quality rating red). Utility and authentication templates still go out."
            ),
        )
