"""Assignment use cases: claim, assign, transfer, unassign, status changes, snooze and wake-up,
the queue and its auto-assignment, auto-return, agents' statuses, the away message.

Each runs in the business's schema (the caller's request, a consumer's database function, or a
job's `schema_context`), owns its transaction, and narrates its changes in the live inbox through
`messaging.announce` (events after commit). Sends (the away message, a transfer note) go through
the send core.

Capacity under concurrency: every automatic assignment happens in `queue_drain`, which first locks
the online agents' status rows (in user order) and only then counts their open conversations, in a
new statement: a second drain waits for the first to commit and then counts what it assigned, so
concurrent arrivals in separate transactions never push an agent past capacity. Queued
conversations are taken with SKIP LOCKED: one a sender is writing right now waits for the next
drain instead of holding this one up (the send core locks conversations, never agents).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tenants.utils import schema_context

from accounts.models import Membership, User
from assignment import hours, selectors
from assignment.errors import assignment_error
from assignment.events import publish_agent_status, publish_queue
from assignment.models import AgentStatus, AssignmentSettings
from config.jobs import defer_job
from messaging.announce import Change, conversations_announce
from messaging.errors import MessagingError, not_found
from messaging.group_commit import send_message
from messaging.ids import client_int, conversation_pk
from messaging.models import AgentPresence, Conversation, Message
from messaging.sending import check_agent_send, check_system_send
from tenancy.models import Business

logger = logging.getLogger("parley.assignment")

MAX_SNOOZE = timedelta(days=366)
MAX_NOTE = 1000
PRESENCE_TTL = timedelta(seconds=75)


# --- helpers --------------------------------------------------------------------------------


def _seat(business: Business, user: User) -> Membership:
    seat = Membership.objects.filter(business_id=business.pk, user_id=user.pk).first()
    if seat is None:
        raise not_found()
    return seat


def _locked(conversation_id: Any) -> Conversation:
    conversation = (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("contact__customer", "assignee")
        .filter(pk=conversation_pk(conversation_id))
        .first()
    )
    if conversation is None:
        raise not_found()
    return conversation


def _enter_queue(conversation: Conversation, now: datetime) -> None:
    """An open conversation without an assignee waits in the queue. It keeps the place it had
    (the customer has waited since then) unless it never had one."""
    if conversation.queued_at is None:
        conversation.queued_at = now


def _after_commit_drain(business: Business) -> None:
    """Serve the queue once this transaction has committed (capacity freed, a conversation queued)."""

    def drain() -> None:
        try:
            # Re-entered: the caller may have left the schema by the time its transaction commits.
            with schema_context(business.schema_name):
                queue_drain(business=business)
        except Exception:  # the periodic sweep drains again within a minute
            logger.exception("queue drain of %s failed", business.schema_name)

    transaction.on_commit(drain)


_FIELDS = ["status", "assignee", "snoozed_until", "waiting_since", "queued_at", "assigned_at", "returned_from_id"]


def _save(conversation: Conversation, fields: Iterable[str] = _FIELDS) -> None:
    conversation.save(update_fields=[*fields, "updated_at"])


# --- the queue and auto-assignment ------------------------------------------------------------


def _pick(agents: list[AgentStatus], loads: dict[int, int], settings: AssignmentSettings, avoid: int | None) -> Any:
    candidates = [a for a in agents if loads.get(a.user_id, 0) < settings.capacity and a.user_id != avoid]
    if not candidates:
        return None
    oldest = datetime.min.replace(tzinfo=UTC)

    def turn(agent: AgentStatus) -> tuple[Any, ...]:
        return (agent.last_assigned_at or oldest, agent.user_id)

    if settings.mode == AssignmentSettings.Mode.BALANCED:
        return min(candidates, key=lambda a: (loads.get(a.user_id, 0), *turn(a)))
    return min(candidates, key=turn)


def queue_drain(*, business: Business) -> list[int]:
    """Assign queued conversations, oldest first, to online agents with room, by the business's
    mode. Returns the ids assigned. Safe to call any time, from any number of processes."""
    settings = selectors.assignment_settings()
    if not settings.auto_assign:
        return []
    members = selectors.member_ids(business=business)
    assigned: list[int] = []
    with transaction.atomic():
        agents = list(
            AgentStatus.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(status=AgentStatus.Status.ONLINE, user_id__in=members)
            .order_by("user_id")
        )
        if not agents:
            return []
        # Counted after the locks: a drain that waited sees what the one before it assigned.
        loads = dict(
            Conversation.objects.filter(assignee_id__in=[a.user_id for a in agents], status__in=selectors.LOAD_STATUSES)
            .values("assignee_id")
            .annotate(n=Count("pk"))
            .values_list("assignee_id", "n")
        )
        room = sum(max(0, settings.capacity - loads.get(a.user_id, 0)) for a in agents)
        if room <= 0:
            return []
        queued = list(
            Conversation.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("contact__customer", "assignee")
            .filter(selectors.in_queue())
            .order_by("queued_at", "pk")[: room + 20]  # a few spare: some may only fit other agents
        )
        now = timezone.now()
        changes: list[Change] = []
        touched: dict[int, AgentStatus] = {}
        for conversation in queued:
            agent = _pick(agents, loads, settings, conversation.returned_from_id)
            if agent is None:
                if all(loads.get(a.user_id, 0) >= settings.capacity for a in agents):
                    break
                continue
            # Distinct times keep the round-robin order within one drain.
            agent.last_assigned_at = now + timedelta(microseconds=len(changes))
            loads[agent.user_id] = loads.get(agent.user_id, 0) + 1
            touched[agent.pk] = agent
            conversation.assignee = agent.user
            conversation.assigned_at = now
            conversation.returned_from_id = None
            _save(conversation, ["assignee", "assigned_at", "returned_from_id"])
            changes.append(Change(conversation, "auto_assigned"))
            assigned.append(conversation.pk)
        if touched:
            AgentStatus.objects.bulk_update(list(touched.values()), ["last_assigned_at"])
        conversations_announce(business=business, changes=changes)
        if changes:
            publish_queue(business=business, assigned=assigned)
    return assigned


# --- claim, assign, transfer, unassign --------------------------------------------------------


def conversation_assign(
    *, business: Business, user: User, conversation_id: Any, assignee_id: Any, note: Any = ""
) -> Conversation:
    """Claim (assignee = oneself), assign or transfer to another member (with an optional note
    for them, kept as an internal note), or unassign (None: back to the queue)."""
    _seat(business, user)
    note = note.strip()[:MAX_NOTE].replace("\x00", "") if isinstance(note, str) else ""
    assignee: User | None = None
    if assignee_id not in (None, ""):
        seat = (
            Membership.objects.select_related("user")
            .filter(business_id=business.pk, user_id=client_int(assignee_id))
            .first()
        )
        if seat is None:
            raise assignment_error(_("Only members of this business can be assigned."))
        assignee = seat.user
    with transaction.atomic():
        conversation = _locked(conversation_id)
        previous = conversation.assignee
        if (previous.pk if previous else None) != (assignee.pk if assignee else None):
            now = timezone.now()
            conversation.assignee = assignee
            conversation.returned_from_id = None
            if assignee is not None:
                conversation.assigned_at = now
                action = "assigned" if previous is None or assignee.pk == user.pk else "transferred"
            else:
                action = "unassigned"
                if conversation.status == Conversation.Status.OPEN:
                    _enter_queue(conversation, now)
            _save(conversation)
            conversations_announce(business=business, changes=[Change(conversation, action, user, note)])
            publish_queue(business=business, assigned=[conversation.pk] if assignee else [])
            # Unassigned: it may go to someone else; moved: the previous holder has room again.
            _after_commit_drain(business)
    if note:
        # The note stays in the thread for everyone (and the new assignee) to read.
        send_message(
            business=business,
            request=check_agent_send(
                business=business, user=user, conversation_id=conversation.pk, body=note, kind=Message.Kind.NOTE
            ),
        )
    return conversation


# --- lifecycle ---------------------------------------------------------------------------------

SETTABLE = (Conversation.Status.OPEN, Conversation.Status.PENDING, Conversation.Status.RESOLVED)


def conversation_set_status(*, business: Business, user: User, conversation_id: Any, status: Any) -> Conversation:
    """Open, pending (waiting for the customer) or resolved; snoozing has its own use case."""
    _seat(business, user)
    if status not in SETTABLE:
        raise assignment_error(_("Unknown conversation status."))
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if conversation.status != status:
            now = timezone.now()
            conversation.status = status
            conversation.snoozed_until = None
            if status == Conversation.Status.RESOLVED:
                conversation.waiting_since = None
            if status == Conversation.Status.OPEN and conversation.assignee_id is None:
                conversation.queued_at = now  # reopened: a new turn in the queue
            _save(conversation)
            conversations_announce(business=business, changes=[Change(conversation, "status", user)])
            # A resolve reaches the customer's chat too: its survey shows without a reload.
            resolved = [conversation.pk] if status == Conversation.Status.RESOLVED else []
            publish_queue(business=business, assigned=resolved)
            _after_commit_drain(business)  # resolving frees a place; reopening may queue
    return conversation


def conversation_snooze(*, business: Business, user: User, conversation_id: Any, until: Any) -> Conversation:
    """Snooze until a time (a job wakes it then) or, with `until` None, until the customer writes
    (the send core wakes it). Either way a customer's message wakes it early."""
    _seat(business, user)
    if until is not None:
        if isinstance(until, str):
            try:
                until = datetime.fromisoformat(until)
            except ValueError:
                raise assignment_error(_("Give the snooze time as a date and time.")) from None
        if not isinstance(until, datetime):
            raise assignment_error(_("Give the snooze time as a date and time."))
        if timezone.is_naive(until):
            until = timezone.make_aware(until)
        now = timezone.now()
        if until <= now:
            raise assignment_error(_("Pick a time in the future."))
        if until > now + MAX_SNOOZE:
            raise assignment_error(_("A conversation can be snoozed for at most a year."))
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if conversation.status == Conversation.Status.RESOLVED:
            raise assignment_error(_("A resolved conversation cannot be snoozed."))
        conversation.status = Conversation.Status.SNOOZED
        conversation.snoozed_until = until
        _save(conversation)
        conversations_announce(business=business, changes=[Change(conversation, "snoozed", user)])
        if until is not None:
            # Deferred with the snooze: committed together, or neither.
            defer_job(
                "assignment.wake", schedule_at=until, schema_name=business.schema_name, conversation_id=conversation.pk
            )
        publish_queue(business=business, assigned=[])
        _after_commit_drain(business)  # a snoozed conversation does not count against capacity
    return conversation


def conversation_wake(*, business: Business, conversation_id: int, now: datetime | None = None) -> bool:
    """The snooze time has come: open again (into the queue if nobody holds it). False if there
    was nothing to wake (the customer wrote first, or an agent changed it meanwhile)."""
    now = now or timezone.now()
    with transaction.atomic():
        try:
            conversation = _locked(conversation_id)
        except MessagingError:
            return False
        due = conversation.snoozed_until
        if conversation.status != Conversation.Status.SNOOZED or due is None or due > now:
            return False
        conversation.status = Conversation.Status.OPEN
        conversation.snoozed_until = None
        if conversation.assignee_id is None:
            conversation.queued_at = now
        _save(conversation)
        conversations_announce(business=business, changes=[Change(conversation, "woken")])
        publish_queue(business=business, assigned=[])
        _after_commit_drain(business)
    return True


def conversations_return_overdue(*, business: Business, now: datetime | None = None) -> list[int]:
    """Auto-return: conversations whose assignee has not replied within the business's time go
    back to the queue, at the place they had (not to the same agent again)."""
    settings = selectors.assignment_settings()
    if not settings.auto_return_minutes:
        return []
    now = now or timezone.now()
    ids = selectors.overdue_assignments(now=now, minutes=settings.auto_return_minutes)
    if not ids:
        return []
    returned: list[int] = []
    with transaction.atomic():
        rows = list(
            Conversation.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("contact__customer", "assignee")
            .filter(pk__in=ids)
            .order_by("pk")
        )
        changes = []
        cutoff = now - timedelta(minutes=settings.auto_return_minutes)
        for conversation in rows:
            # Re-checked under the lock: the agent may have replied since the read above.
            waiting, assigned_at = conversation.waiting_since, conversation.assigned_at
            if conversation.assignee_id is None or waiting is None or waiting > cutoff:
                continue
            if assigned_at is not None and assigned_at > cutoff:
                continue
            previous = conversation.assignee
            conversation.returned_from_id = conversation.assignee_id
            conversation.assignee = None
            _enter_queue(conversation, now)
            _save(conversation)
            note = _("%(name)s did not reply within %(minutes)d minutes.") % {
                "name": previous.get_short_name() if previous else "?",
                "minutes": settings.auto_return_minutes,
            }
            changes.append(Change(conversation, "returned", None, note))
            returned.append(conversation.pk)
        conversations_announce(business=business, changes=changes)
        if changes:
            publish_queue(business=business, assigned=[])
            _after_commit_drain(business)
    return returned


def conversations_wake_due(*, business: Business, now: datetime | None = None) -> list[int]:
    """The sweep's catch-all for snoozes whose wake-up job did not run (a lost worker)."""
    now = now or timezone.now()
    return [
        cid
        for cid in selectors.due_snoozes(now=now)
        if conversation_wake(business=business, conversation_id=cid, now=now)
    ]


# --- agents' statuses ------------------------------------------------------------------------


def agent_status_set(*, business: Business, user: User, status: Any) -> AgentStatus:
    """The agent says whether they take conversations now (online) or not (away, offline)."""
    _seat(business, user)
    if status not in AgentStatus.Status.values:
        raise assignment_error(_("Unknown status."))
    with transaction.atomic():
        row, _created = AgentStatus.objects.select_for_update().get_or_create(user_id=user.pk)
        row.status, row.auto_away = status, False
        row.save(update_fields=["status", "auto_away", "changed_at"])
        publish_agent_status(business=business, user=user, status=status)
        if status == AgentStatus.Status.ONLINE:
            _after_commit_drain(business)
    return row


def agent_connected(*, business: Business, user: User) -> str:
    """An inbox tab opened: an agent who was away only because every tab had closed (or who is
    new) is online again. A status the agent chose stays."""
    with transaction.atomic():
        row, created = AgentStatus.objects.select_for_update().get_or_create(
            user_id=user.pk, defaults={"status": AgentStatus.Status.ONLINE}
        )
        if created or row.auto_away:
            row.status, row.auto_away = AgentStatus.Status.ONLINE, False
            row.save(update_fields=["status", "auto_away", "changed_at"])
            publish_agent_status(business=business, user=user, status=row.status)
            _after_commit_drain(business)
    return row.status


def agent_disconnected(*, business: Business, user: User) -> str | None:
    """An inbox tab closed (its presence row is gone): with none left, an online agent is away."""
    fresh = timezone.now() - PRESENCE_TTL
    if AgentPresence.objects.filter(user_id=user.pk, seen_at__gte=fresh).exists():
        return None
    with transaction.atomic():
        row = AgentStatus.objects.select_for_update().filter(user_id=user.pk).first()
        if row is None or row.status != AgentStatus.Status.ONLINE:
            return None
        row.status, row.auto_away = AgentStatus.Status.AWAY, True
        row.save(update_fields=["status", "auto_away", "changed_at"])
        publish_agent_status(business=business, user=user, status=row.status)
    return row.status


def agents_away_without_inbox(*, business: Business) -> list[int]:
    """The sweep: online agents whose every tab went away without closing (a crashed server)."""
    ids = selectors.online_without_inbox(fresh_after=timezone.now() - PRESENCE_TTL)
    for user in User.objects.filter(pk__in=ids):
        agent_disconnected(business=business, user=user)
    return ids


def agent_removed(*, business: Business, user_id: int) -> list[int]:
    """A seat was removed: the holder's conversations go back to the queue (not resolved, not
    lost), they stop receiving conversations, and the queue is served again after commit."""
    now = timezone.now()
    rows = list(
        Conversation.objects.select_for_update(of=("self",))
        .select_related("contact__customer", "assignee")
        .filter(assignee_id=user_id)
        .exclude(status=Conversation.Status.RESOLVED)
        .order_by("pk")
    )
    changes = []
    for conversation in rows:
        conversation.assignee = None
        if conversation.status == Conversation.Status.OPEN:
            _enter_queue(conversation, now)
        _save(conversation)
        changes.append(Change(conversation, "unassigned"))
    AgentStatus.objects.filter(user_id=user_id).delete()
    conversations_announce(business=business, changes=changes)
    if changes:
        publish_queue(business=business, assigned=[])
        _after_commit_drain(business)
    return [c.pk for c in rows]


# --- settings ----------------------------------------------------------------------------------


def assignment_settings_update(*, business: Business, user: User, values: dict[str, Any]) -> AssignmentSettings:
    """Save the business's rules (validated by the settings form); the queue is served at once
    under the new rules."""
    seat = _seat(business, user)
    if not seat.can_manage:
        raise assignment_error(_("Only the business's owners and admins can change assignment."))
    with transaction.atomic():
        settings, _created = AssignmentSettings.objects.select_for_update().get_or_create(pk=1)
        for name, value in values.items():
            setattr(settings, name, value)
        settings.full_clean()
        settings.save()
        schema_name = business.schema_name
        transaction.on_commit(lambda: selectors.forget_cached_settings(schema_name))
        _after_commit_drain(business)
    selectors.forget_cached_settings(schema_name)
    return settings


# --- a customer wrote (called by messaging after the send committed) --------------------------


def _just_queued(conversation: Conversation, sent_at: datetime) -> bool:
    return (
        conversation.status == Conversation.Status.OPEN
        and conversation.assignee_id is None
        and conversation.queued_at == sent_at
    )


def _away_due(settings: AssignmentSettings, conversation: Conversation, sent_at: datetime) -> datetime | None:
    """The start of the closed period if the away message is due for this message."""
    if not (settings.hours_enabled and settings.away_message.strip()):
        return None
    since = hours.closed_since(settings, sent_at)
    if since is not None and (conversation.away_sent_at is None or conversation.away_sent_at < since):
        return since
    return None


def after_customer_message_needed(*, schema_name: str, conversation: Conversation, sent_at: datetime) -> bool:
    """Whether `after_customer_message` has anything to do, decided without the database (the
    websocket path asks on the event loop; most messages go into conversations already held)."""
    if _just_queued(conversation, sent_at):
        return True
    settings = selectors.assignment_settings_peek(schema_name)
    return settings is None or _away_due(settings, conversation, sent_at) is not None


def after_customer_message(*, business: Business, conversation: Conversation, sent_at: datetime) -> None:
    """Outside business hours the customer gets the away message once per closed period; a
    conversation that just entered the queue is served (and the customers in line told)."""
    settings = selectors.assignment_settings_cached()
    since = _away_due(settings, conversation, sent_at)
    if since is not None:
        _send_away(business=business, conversation=conversation, since=since, body=settings.away_message)
    if _just_queued(conversation, sent_at):
        assigned = queue_drain(business=business) if settings.auto_assign else []
        if not assigned:
            publish_queue(business=business, assigned=[])


def _send_away(*, business: Business, conversation: Conversation, since: datetime, body: str) -> None:
    # One per closed period whatever the race: the period is the message's client_msg_id, which
    # the send core deduplicates per conversation.
    request = check_system_send(
        conversation_id=conversation.pk, body=body, client_msg_id=f"away:{int(since.timestamp())}"
    )
    try:
        send_message(business=business, request=request)
    except MessagingError as error:  # blocked meanwhile, or overloaded: the customer wrote anyway
        logger.info("away message for conversation %s not sent: %s", conversation.pk, error.code)
        return
    Conversation.objects.filter(pk=conversation.pk).update(away_sent_at=timezone.now())
    conversation.away_sent_at = timezone.now()
