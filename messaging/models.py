"""Messaging data, in each business's own schema.

Every change a client must see is also an `Event` row with a per-business, gap-free,
monotonically increasing id (allocated from `StreamCounter` under a row lock, so ids commit in
order). Clients resume from the last id they saw; the channel layer is only the fast path.

References from here into `public` (users, customers) have no database constraint
(`db_constraint=False`), in every tenant app: each such constraint adds two referential triggers
to the public table *per business schema* (21,242 on accounts_user at 1,000 businesses), which
every new database connection loaded on its first read of a user (43 ms instead of 3 ms) and
every UPDATE of a user ran (66 ms instead of 7 ms). What they guaranteed is kept by the app:
users are never deleted (admin: deactivate; accounts.admin), and a customer is deleted only by
the privacy centre's account deletion, which erases every schema first, while every write that
creates a contact also writes the public BusinessContact row in the same transaction, whose
constraint (public → public: one trigger pair) fails either that write or the deletion.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from tenancy.public_references import optional_user_reference

SERVICE_WINDOW_HOURS = 24


class Contact(models.Model):
    """The business's view of a global, verified `Customer`: its own name for them and notes."""

    customer = models.OneToOneField(
        "accounts.Customer", db_constraint=False, on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    notes = models.TextField(_("notes"), max_length=4000, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.customer.display_name or self.customer.phone_display


class Conversation(models.Model):
    """One thread per contact, like a phone's chat: resolving closes it, a new message reopens it."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        # Until `snoozed_until`, or (None) until the customer writes; either wakes it (assignment.jobs).
        SNOOZED = "snoozed", _("Snoozed")
        RESOLVED = "resolved", _("Resolved")

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="conversation")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    assignee = optional_user_reference()
    # The customer's last message plus 24 hours: inside it agents reply freely (WhatsApp's rule).
    window_expires_at = models.DateTimeField(_("service window ends"), null=True, blank=True)
    # Indexed by conv_recent_id and conv_status_recent, not on its own: every message updates it,
    # which is never a HOT update, so each index is written again per message.
    last_message_at = models.DateTimeField(_("last message"), null=True, blank=True)
    last_message_preview = models.CharField(max_length=140, blank=True)
    # Inbound messages no agent has read yet (one shared counter: it is a shared inbox).
    unread_count = models.PositiveIntegerField(default=0)
    # The last event a customer may see, so a customer's client can tell a gap from events of
    # other conversations (event ids are per business, not per conversation).
    last_public_event_id = models.BigIntegerField(default=0)
    # The last event of this conversation for any audience (agents' notes and list updates
    # too): each event names its predecessor, so an agent's client can tell a gap per conversation.
    last_event_id = models.BigIntegerField(default=0)
    # Lifecycle and assignment (issue 12; rules in assignment/). All nullable: the send core
    # creates conversations with a raw INSERT that names only the columns it needs.
    snoozed_until = models.DateTimeField(_("snoozed until"), null=True, blank=True)
    # The customer's oldest message no agent has answered yet ("waiting longest" sorts by it).
    waiting_since = models.DateTimeField(_("waiting since"), null=True, blank=True)
    # When it last entered the queue (unassigned and open): the queue is served oldest first.
    # Kept after assignment, so assigned_at - queued_at is how long it waited.
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    assigned_at = models.DateTimeField(_("assigned"), null=True, blank=True)
    # The agent it was taken back from (auto-return): not given straight back to them.
    returned_from_id = models.BigIntegerField(null=True, blank=True)
    # The away message went out at this time (once per closed period of the business hours).
    away_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-last_message_at"], name="conv_status_recent"),
            # The list's keyset pages: newest first, and the customers waiting longest first.
            models.Index(fields=["-last_message_at", "-id"], name="conv_recent_id"),
            models.Index(fields=["waiting_since", "id"], name="conv_waiting", condition=Q(waiting_since__isnull=False)),
            # The queue: open, unassigned, oldest first.
            models.Index(
                fields=["queued_at", "id"],
                name="conv_queue",
                condition=Q(status="open", assignee__isnull=True, queued_at__isnull=False),
            ),
            # The queue's pace: conversations assigned in the last hour, counted for every
            # customer's chat page and queue push (assignment.selectors). Without it each count
            # read every conversation the business ever had.
            models.Index(fields=["assigned_at"], name="conv_assigned", condition=Q(assigned_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.contact}"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "in", _("From the customer")
        OUTBOUND = "out", _("To the customer")
        INTERNAL = "internal", _("Internal")

    class Author(models.TextChoices):
        CUSTOMER = "customer", _("Customer")
        AGENT = "agent", _("Agent")
        SYSTEM = "system", _("System")
        API = "api", _("API")

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        NOTE = "note", _("Internal note")
        TEMPLATE = "template", _("Template")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")

    # No index of its own: message_conv_recent (and the client_msg_id constraint) lead with it;
    # a third copy only cost every insert.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    author_kind = models.CharField(max_length=8, choices=Author.choices)
    author_user = optional_user_reference()
    # "customer:<id>", "user:<id>", "api:<key>": who the client_msg_id belongs to.
    author_key = models.CharField(max_length=64)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(max_length=4096)
    template_name = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENT)
    failure_reason = models.CharField(max_length=300, blank=True)
    client_msg_id = models.CharField(max_length=64, blank=True)
    event_id = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    # Rich messages (issue 13): the message this one quotes; for a customer's tap on a button or
    # list option, the interactive message it answers and the option's id.
    reply_to = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # {"type": "buttons"|"list", "options": [{"id": ..., "title": ...}], "button": ...} or null.
    interactive = models.JSONField(null=True, blank=True)
    choice_id = models.CharField(max_length=64, blank=True, db_default="")
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "author_key", "client_msg_id"],
                condition=~Q(client_msg_id=""),
                name="message_unique_client_msg_id",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "-id"], name="message_conv_recent"),
            # The messages still waiting for a receipt, per conversation and direction: what the
            # send core's lock (is anything unread?), a reply's read mark, the ack writer and the
            # unread recounts look for. Without it each of them read every message of the
            # conversation: a conversation of 20,000 messages cost its sends ~3 ms of server
            # time under the group's locks (issue 9). Read messages leave it, so it stays the
            # size of what is unread. (Zulip keeps partial indexes on unread flags for the same
            # reason.) A query uses it by ANDing in awaiting_receipt_sql (below).
            models.Index(
                fields=["conversation", "direction", "id"],
                # Two comparisons, not `status IN (...)`: the IN list's definition changes when
                # PostgreSQL prints and re-reads it, as a business schema's copy does
                # (tenancy.provisioning), and every copy must match the template.
                condition=Q(read_at__isnull=True)
                | Q(delivered_at__isnull=True)
                | (~Q(status="read") & ~Q(status="failed")),
                name="message_awaiting_receipt",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()}: {self.body[:40]}"


def awaiting_receipt_sql(alias: str) -> str:
    """`message_awaiting_receipt`'s condition on the messages aliased `alias`, spelled as its
    CREATE INDEX spells it. PostgreSQL uses a partial index only where it can prove the query's
    WHERE implies the condition, which it does for the same clause: a query that wants the index
    ANDs this in (where its other clauses already imply it, so the rows are the same)."""
    return (
        f"({alias}.read_at IS NULL OR {alias}.delivered_at IS NULL OR "
        f"(NOT ({alias}.status = 'read') AND NOT ({alias}.status = 'failed')))"
    )


class Reaction(models.Model):
    """One emoji per person per message (WhatsApp's rule): setting another replaces it."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    # "customer:<id>" or "user:<id>".
    reactor_key = models.CharField(max_length=64)
    reactor_name = models.CharField(max_length=150, blank=True)
    emoji = models.CharField(max_length=16)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("reaction")
        verbose_name_plural = _("reactions")
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["message", "reactor_key"], name="reaction_one_per_person")]

    def __str__(self) -> str:
        return f"{self.reactor_key} {self.emoji}"


class StreamCounter(models.Model):
    """One row per schema: the last event id handed out. Updating it locks the row until commit,
    so a later id never becomes visible before an earlier one (no gap a client could skip)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("event counter")

    def __str__(self) -> str:
        return str(self.last_id)


class Event(models.Model):
    """The per-business event stream, for resume. `frame` is the exact JSON text sent to clients:
    serialized once, when the event is written."""

    class Audience(models.TextChoices):
        EVERYONE = "all", _("Customer and agents")
        AGENTS = "agents", _("Agents only")

    id = models.BigIntegerField(primary_key=True)
    type = models.CharField(max_length=40)
    conversation_id = models.BigIntegerField(null=True, blank=True)
    audience = models.CharField(max_length=8, choices=Audience.choices)
    frame = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["id"]
        indexes = [models.Index(fields=["conversation_id", "id"], name="event_conv_id")]

    def __str__(self) -> str:
        return f"{self.pk} {self.type}"


class AgentPresence(models.Model):
    """An open inbox connection: who is online and which conversation they look at. Rows of a
    crashed server are ignored once `seen_at` is older than the heartbeat allows."""

    channel_name = models.CharField(max_length=200, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, db_constraint=False, on_delete=models.CASCADE, related_name="+")
    conversation_id = models.BigIntegerField(null=True, blank=True)
    seen_at = models.DateTimeField()

    class Meta:
        verbose_name = _("agent presence")
        verbose_name_plural = _("agent presence")

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.conversation_id}"
