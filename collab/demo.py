"""Demo: the airline's busy inbox. Three more agents, labels, canned replies, macros, and a few
hundred conversations over the last four weeks — answered, resolved, waiting in the queue —
with notes that @mention teammates, so the inbox, search and Reports look like a team at work.

Loaded with COPY (collab.bulk), not through the send core: this is history, with its own
timestamps, and it takes a second instead of a minute. Idempotent: skipped once loaded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone
from django_tenants.utils import tenant_context

from accounts.models import Customer, Membership, User
from collab.bulk import MESSAGE_COLUMNS, CycleTriggerOff, copy_rows, reserve_event_ids
from collab.models import AgentNotification, CannedReply, ConversationLabel, Label, Macro
from directory.models import CustomerThread
from messaging.models import Contact, Conversation, Message
from tenancy.demo import DemoWorld, demo_seat, demo_user
from tenancy.models import Business

BUSY_CONVERSATIONS = 320
DAYS = 28
# Recent unanswered conversations nobody has taken yet: what the shared queue shows.
QUEUE = 8
# Conversations of the last hours after the queue, answered and still open: the inbox is busy
# whatever the hour the demo is loaded at (left to the dice, an evening load had ~2 open per agent).
RECENT = 16
MARKER_PHONE = "+4915190000000"  # the first bulk-loaded customer: its presence means "loaded"

LABELS = [
    ("Baggage", "orange"),
    ("Flight change", "blue"),
    ("Refund", "red"),
    ("Booking", "teal"),
    ("VIP", "purple"),
    ("Complaint", "pink"),
]

CANNED = [
    ("hello", "Greeting", "Hello {{first_name}}, thanks for writing to {{business}}! I'm {{agent}} and I'll help you."),
    (
        "bag",
        "Lost bag",
        "I'm sorry, {{first_name}}! I've opened a trace for your bag; you'll get an update within 24 hours.",
    ),
    (
        "refund",
        "Refund started",
        "Your refund is on its way, {{first_name}}: it reaches your card within 7 working days.",
    ),
    (
        "rebook",
        "Rebooking options",
        "We can rebook you free of charge on the next flight. Shall I reserve a seat for you?",
    ),
    ("thanks", "Closing", "Thank you, {{first_name}}. Have a good flight with {{business}}!"),
]

FIRST_NAMES = [
    "Sophie",
    "Lukas",
    "Elif",
    "Noah",
    "Emma",
    "Leon",
    "Hannah",
    "Paul",
    "Lina",
    "Felix",
    "Clara",
    "Jonas",
    "Marie",
    "Ben",
    "Amelie",
    "Elias",
    "Laura",
    "Finn",
    "Sara",
    "David",
    "Julia",
    "Tobias",
    "Nina",
    "Max",
    "Zoe",
    "Aylin",
    "Matteo",
    "Ida",
    "Oskar",
    "Greta",
    "Milan",
    "Lea",
    "Karim",
    "Anna",
    "Luca",
    "Frieda",
]
LAST_NAMES = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Neumann",
    "Schwarz",
    "Braun",
    "Zimmermann",
    "Krüger",
    "Hartmann",
    "Lange",
    "Yilmaz",
    "Keller",
    "Huber",
    "Gruber",
    "Bauer",
    "Novak",
    "Rossi",
    "Jansen",
]

# Per topic: (label, customer openers, agent answers, customer follow-ups)
TOPICS = [
    (
        "Baggage",
        [
            "My suitcase did not arrive in Vienna on flight AU 207. What should I do?",
            "Mein Koffer ist in Hamburg nicht angekommen (AU 318). Wo ist er?",
            "My bag arrived damaged, the handle is broken.",
            "Can I bring a second piece of luggage on my flight to Lisbon?",
        ],
        [
            "I'm sorry! Your bag was left in Frankfurt and comes on tonight's flight; we deliver it to your hotel.",
            "Ihr Koffer wurde gefunden und kommt morgen früh mit AU 320. Wir liefern ihn kostenlos.",
            "Please send a photo of the damage and your bag tag number, and we'll settle it within a week.",
            "Yes, a second bag of up to 23 kg costs €35 when added online before check-in.",
        ],
        ["Thank you, the hotel is Sacher, room 312.", "Danke, ich warte dann.", "Photo sent, tag 0AU123456."],
    ),
    (
        "Flight change",
        [
            "My flight AU 412 to Lisbon shows a new departure time. Is that right?",
            "Mein Flug nach Zürich wurde gestrichen. Welche Alternativen gibt es?",
            "Can I move my flight to Rome from Friday to Sunday?",
            "The flight was delayed by three hours, will I make my connection in Madrid?",
        ],
        [
            "Yes, AU 412 now leaves at 10:40 instead of 09:15 because of a crew change. Your seat stays the same.",
            "Wir haben Sie auf den nächsten Flug um 14:05 umgebucht, ohne Aufpreis.",
            "Sunday works: the change is free with your Flex fare. I've moved the booking.",
            "Your connection waits for you; the gate is B22, right next to your arrival gate.",
        ],
        ["Great, thanks!", "Passt, danke für die schnelle Hilfe.", "Will I get a new boarding pass?"],
    ),
    (
        "Refund",
        [
            "I cancelled my booking last week, when do I get my money back?",
            "Ich möchte eine Erstattung für den ausgefallenen Flug beantragen.",
            "I was charged twice for my seat reservation.",
        ],
        [
            "The refund of €189 was approved today; it reaches your card within 7 working days.",
            "Die Erstattung über 240 € ist veranlasst und in 5 bis 7 Tagen auf Ihrem Konto.",
            "You're right, the second charge is reversed; you'll see it in a few days.",
        ],
        ["Thank you.", "Vielen Dank!", "Perfect."],
    ),
    (
        "Booking",
        [
            "Can I add a child to my booking ABC123?",
            "Kann ich einen Sitzplatz am Fenster reservieren?",
            "Is there a vegetarian meal on the flight to Athens?",
            "Can I bring my bike on the flight to Zurich next week?",
        ],
        [
            "Yes, I've added your daughter; the child fare is €79.",
            "Sitz 14A am Fenster ist für Sie reserviert.",
            "Yes, I've ordered a vegetarian meal for you.",
            "Bikes fly as special baggage for €50; please pack it in a bike bag.",
        ],
        ["Thanks!", "Super, danke.", "How early should I be at the airport?"],
    ),
    (
        "Complaint",
        [
            "The staff at the gate in Munich were very rude to us.",
            "Der Flug war schmutzig und das Essen kalt. Das war enttäuschend.",
        ],
        [
            "I'm very sorry. I've passed this on to our ground team in Munich and added 2,000 miles to your account.",
            "Das tut mir leid. Als Entschuldigung schreiben wir Ihnen einen Gutschein über 30 € gut.",
        ],
        ["Thank you for taking it seriously.", "Danke für die Rückmeldung."],
    ),
]

NOTES = [
    "@{name} can you check the fare rules for this one?",
    "Customer is a frequent flyer, handle with care. @{name} FYI",
    "Bag trace opened with Frankfurt lost & found.",
    "@{name} please call the station in Vienna about this.",
    "Refund approved by finance.",
]

EXTRA_AGENTS = [
    ("agent3@aurora-air.example", "Lea Fischer"),
    ("agent4@aurora-air.example", "Tim Becker"),
    ("agent5@aurora-air.example", "Sara Novak"),
]


@dataclass
class Loaded:
    conversations: int = 0
    messages: int = 0
    notifications: int = 0
    names: list[str] = field(default_factory=list)


def _hour(rng: random.Random, day: datetime) -> datetime:
    # Customers write from early morning to late evening, most around midday.
    hour = min(22, max(6, int(rng.gauss(13, 3.5))))
    return day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)


def _reply_gap(rng: random.Random) -> timedelta:
    # First responses: mostly minutes, a tail of hours (what the Reports page should show).
    return timedelta(seconds=int(min(rng.lognormvariate(6.3, 1.0), 6 * 3600)))


def seed_busy_inbox(*, business: Business, agents: list[User], owner: User, count: int = BUSY_CONVERSATIONS) -> Loaded:
    """Load `count` past conversations into the business (call inside its tenant context and a
    transaction). Deterministic: the same seed gives the same inbox."""
    rng = random.Random(12)
    now = timezone.now()
    labels = {label.name: label for label in Label.objects.all()}
    phones = [f"+49151{90000000 + n:08d}" for n in range(count)]
    names = [f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" for _ in range(count)]
    Customer.objects.bulk_create(
        [
            Customer(phone_number=p, display_name=n, country_code="DE", verified_at=now - timedelta(days=40))
            for p, n in zip(phones, names, strict=True)
        ],
        ignore_conflicts=True,
    )
    customers = {c.phone_number: c for c in Customer.objects.filter(phone_number__in=phones)}
    taken = set(
        Contact.objects.filter(customer__phone_number__in=phones).values_list("customer__phone_number", flat=True)
    )
    plan: list[tuple[Customer, str, datetime, int]] = []  # (customer, name, started, index)
    for index, (phone, name) in enumerate(zip(phones, names, strict=True)):
        if phone in taken:
            continue
        # Older days get fewer conversations: the airline is growing; weekends are quieter.
        back = int(rng.triangular(0, DAYS, 0))
        day = now - timedelta(days=back)
        started = _hour(rng, day)
        if started > now - timedelta(minutes=3):
            started = now - timedelta(minutes=rng.randrange(3, 120))
        if day.weekday() >= 5 and rng.random() < 0.4:
            started -= timedelta(days=2)
        if len(plan) < QUEUE:
            # The queue is there whatever the hour the demo is loaded at: left to the dice, how
            # many of today's conversations still waited depended on the time of day (3 at 09:00).
            started = now - timedelta(minutes=rng.randrange(2, 30))
        elif len(plan) < QUEUE + RECENT:
            started = now - timedelta(minutes=rng.randrange(45, 8 * 60))
        plan.append((customers[phone], name, started, index))
    contacts = Contact.objects.bulk_create([Contact(customer=c, name=n) for c, n, _s, _i in plan])
    loaded = Loaded()
    conversations: list[Conversation] = []
    scripts = []
    for position, (contact, (_customer, name, started, index)) in enumerate(zip(contacts, plan, strict=True)):
        label, openers, answers, follow_ups = TOPICS[index % len(TOPICS)] if rng.random() < 0.85 else rng.choice(TOPICS)
        pick = rng.randrange(len(openers))
        age = now - started
        lines: list[tuple[str, str, datetime, User | None]] = [("in", openers[pick], started, None)]
        responder = rng.choice(agents)
        queued = position < QUEUE
        answered = not queued and (age > timedelta(minutes=40) or rng.random() < 0.5)
        at = started
        if answered:
            at = started + _reply_gap(rng)
            if at < now:
                lines.append(("out", answers[pick % len(answers)], at, responder))
                if rng.random() < 0.6:
                    at += timedelta(minutes=rng.randrange(2, 40))
                    if at < now:
                        lines.append(("in", rng.choice(follow_ups), at, None))
                        at += timedelta(minutes=rng.randrange(1, 25))
                        if at < now:
                            lines.append(("out", "You're welcome! Anything else, just write here.", at, responder))
        if not queued and rng.random() < 0.25:
            mentioned = rng.choice([a for a in agents + [owner] if a != responder])
            note = rng.choice(NOTES).format(name=mentioned.get_short_name())
            lines.insert(1, ("internal", note, started + timedelta(seconds=rng.randrange(20, 300)), responder))
        lines.sort(key=lambda line: line[2])
        last_at = lines[-1][2]
        last_in = max(line[2] for line in lines if line[0] == "in")
        replied = any(line[0] == "out" for line in lines)
        if replied and age > timedelta(hours=20):
            status = Conversation.Status.RESOLVED if rng.random() < 0.93 else Conversation.Status.PENDING
        elif replied:
            status = rng.choice([Conversation.Status.OPEN, Conversation.Status.OPEN, Conversation.Status.PENDING])
        else:
            status = Conversation.Status.OPEN
        # The queue: recent unanswered conversations nobody has picked up yet.
        assignee = responder if replied or (not queued and rng.random() < 0.4) else None
        resolved_at = (
            last_at + timedelta(minutes=rng.randrange(5, 8 * 60)) if status == Conversation.Status.RESOLVED else None
        )
        unread = 0 if replied and lines[-1][0] != "in" else sum(1 for line in lines if line[0] == "in")
        # Lifecycle columns (assignment): who waits since when, who queued, when it was taken.
        answered_after = [line[2] for line in lines if line[0] == "out"]
        waiting = [line[2] for line in lines if line[0] == "in" and not any(a > line[2] for a in answered_after)]
        conversations.append(
            Conversation(
                contact=contact,
                status=status,
                assignee=assignee,
                window_expires_at=last_in + timedelta(hours=24),
                last_message_at=last_at,
                last_message_preview=lines[-1][1][:140] if lines[-1][0] != "internal" else lines[0][1][:140],
                unread_count=unread if status != Conversation.Status.RESOLVED else 0,
                waiting_since=min(waiting) if waiting and status != Conversation.Status.RESOLVED else None,
                queued_at=started,
                assigned_at=(answered_after[0] if answered_after else started + timedelta(minutes=2))
                if assignee
                else None,
            )
        )
        scripts.append((lines, label, resolved_at, name))
    with CycleTriggerOff():
        conversations = Conversation.objects.bulk_create(conversations)
        total = sum(len(lines) for lines, *_rest in scripts)
        first_event = reserve_event_ids(total)
        rows = []
        note_rows: list[tuple[int, int, User, str]] = []  # (conversation, row index, author, body)
        event_id = first_event
        for conversation, (lines, _label, _resolved, _name) in zip(conversations, scripts, strict=True):
            for direction, body, at, author in lines:
                kind = Message.Kind.NOTE if direction == "internal" else Message.Kind.TEXT
                author_kind = Message.Author.CUSTOMER if direction == "in" else Message.Author.AGENT
                key = (
                    f"customer:{conversation.contact.customer_id}"
                    if direction == "in"
                    else f"user:{author.pk if author else 0}"
                )
                message_status = Message.Status.READ if direction != "internal" else Message.Status.SENT
                rows.append(
                    (
                        conversation.pk,
                        direction,
                        author_kind,
                        author.pk if author else None,
                        key,
                        kind,
                        body,
                        "",
                        message_status,
                        "",
                        "",
                        event_id,
                        at,
                        at + timedelta(seconds=5),
                        at + timedelta(seconds=40),
                    )
                )
                if kind == Message.Kind.NOTE and author is not None:
                    note_rows.append((conversation.pk, event_id, author, body))
                event_id += 1
        loaded.messages = copy_rows(Message._meta.db_table, MESSAGE_COLUMNS, rows)
        # Resolution times (the rebuild reads updated_at as a resolved conversation's end) and
        # creation times, then labels.
        for conversation, (lines, _label_name, resolved_at, _name) in zip(conversations, scripts, strict=True):
            Conversation.objects.filter(pk=conversation.pk).update(
                created_at=lines[0][2], updated_at=resolved_at or lines[-1][2]
            )
        ConversationLabel.objects.bulk_create(
            [
                ConversationLabel(conversation=conversation, label=labels[label_name])
                for conversation, (_l, label_name, _r, _n) in zip(conversations, scripts, strict=True)
                if label_name in labels
            ]
            + [
                ConversationLabel(conversation=conversation, label=labels["VIP"])
                for conversation in conversations[::17]
                if "VIP" in labels
            ],
            ignore_conflicts=True,
        )
    # Mentions in the notes become the agents' notifications (the live path does this per note).
    people = {a.get_short_name().lower(): a for a in agents + [owner]}
    by_event = dict(Message.objects.filter(event_id__in=[r[1] for r in note_rows]).values_list("event_id", "pk"))
    notifications = []
    for conversation_id, note_event, author, body in note_rows:
        for handle, person in people.items():
            if f"@{handle}" in body.lower() and person != author:
                notifications.append(
                    AgentNotification(
                        user=person,
                        conversation_id=conversation_id,
                        message_id=by_event[note_event],
                        actor=author,
                        excerpt=body[:200],
                    )
                )
    AgentNotification.objects.bulk_create(notifications, ignore_conflicts=True)
    CustomerThread.objects.bulk_create(
        [
            CustomerThread(
                customer_id=conversation.contact.customer_id,
                business_id=business.pk,
                last_activity_at=conversation.last_message_at or now,
            )
            for conversation in conversations
        ],
        ignore_conflicts=True,
    )
    loaded.conversations = len(conversations)
    loaded.notifications = len(notifications)
    return loaded


def _setup(owner: User) -> None:
    for name, colour in LABELS:
        Label.objects.get_or_create(name=name, defaults={"colour": colour})
    for shortcut, title, body in CANNED:
        CannedReply.objects.get_or_create(shortcut=shortcut, defaults={"title": title, "body": body})
    labels = {label.name: label.pk for label in Label.objects.all()}
    replies = {reply.shortcut: reply.pk for reply in CannedReply.objects.all()}
    macros = {
        "Lost bag: trace and take it": {
            "labels": [labels["Baggage"]],
            "canned_reply": replies["bag"],
            "assign": "me",
            "status": None,
        },
        "Refund done: resolve": {
            "labels": [labels["Refund"]],
            "canned_reply": replies["refund"],
            "assign": None,
            "status": "resolved",
        },
        "Waiting for the customer": {"labels": [], "canned_reply": None, "assign": None, "status": "pending"},
    }
    for name, actions in macros.items():
        Macro.objects.get_or_create(name=name, defaults={"actions": actions})


def seed(world: DemoWorld) -> None:
    airline = world.airline
    agents = [world.users[k] for k in ("airline_agent_1", "airline_agent_2") if k in world.users]
    for email, full_name in EXTRA_AGENTS:
        user = demo_user(email, full_name)
        demo_seat(user, airline, Membership.Role.AGENT)
        agents.append(user)
    owner = world.users["airline_owner"]
    with tenant_context(airline):
        _setup(owner)
        if Contact.objects.filter(customer__phone_number=MARKER_PHONE).exists():
            return
        loaded = seed_busy_inbox(business=airline, agents=agents, owner=owner)
    world.lines.append(
        f"Busy inbox (airline): {loaded.conversations} conversations over {DAYS} days, {loaded.messages} messages, "
        f"6 labels, 5 canned replies (/hello, /bag, /refund, /rebook, /thanks), 3 macros, "
        f"{loaded.notifications} @mentions; more agents: " + ", ".join(email for email, _name in EXTRA_AGENTS)
    )
