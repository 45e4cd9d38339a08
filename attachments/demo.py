"""Demo rich messages in the airline's inbox: a boarding-pass PDF generated here, a photo of a
damaged suitcase drawn with Pillow, quoted replies, reactions and a flight-cancellation template
with Rebook / Refund / Talk to us buttons the customer taps. Idempotent (a marker upload key)."""

from __future__ import annotations

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context
from PIL import Image, ImageDraw, ImageFont

from accounts.models import Customer
from attachments.models import Attachment
from attachments.services import attachment_upload
from messaging.models import Conversation, Message
from messaging.services import message_send_agent, message_send_customer, message_send_template, reaction_set
from tenancy.demo import DemoWorld

MARKER = "demo-boarding-pass"


def boarding_pass_pdf(*, passenger: str, flight: str, route: str, seat: str, departs: str, gate: str) -> bytes:
    """A one-page PDF written by hand (no PDF library needed for a few lines of text)."""
    lines = [
        ("F2", 20, 50, 760, "Aurora Air  -  Boarding pass"),
        ("F1", 12, 50, 720, f"Passenger: {passenger}"),
        ("F1", 12, 50, 700, f"Flight: {flight}    {route}"),
        ("F1", 12, 50, 680, f"Departs: {departs}    Gate: {gate}    Seat: {seat}"),
        ("F1", 10, 50, 650, "Boarding closes 20 minutes before departure."),
    ]
    text = "".join(
        f"BT /{font} {size} Tf {x} {y} Td ({line.replace('(', '[').replace(')', ']')}) Tj ET\n"
        for font, size, x, y, line in lines
    )
    stream = "0.12 0.23 0.37 rg 40 740 530 40 re S\n" + text
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}endstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def suitcase_photo() -> bytes:
    """A 'photo' of a dented blue suitcase on a baggage belt."""
    image = Image.new("RGB", (960, 720), "#d9d4cc")
    draw = ImageDraw.Draw(image)
    for y in range(520, 720, 24):  # the belt's slats
        draw.rectangle((0, y, 960, y + 18), fill="#3b3f45")
    draw.rounded_rectangle((250, 170, 710, 560), radius=40, fill="#2f5d94", outline="#1f3a5f", width=8)
    draw.rounded_rectangle((400, 110, 560, 180), radius=20, outline="#1f3a5f", width=14)
    draw.polygon([(560, 260), (640, 300), (600, 380), (540, 330)], fill="#24497a")  # the dent
    for x in (300, 660):
        draw.line((x, 200, x, 530), fill="#24497a", width=6)
    draw.rectangle((620, 420, 760, 500), fill="#fff4e0", outline="#8a4b00", width=4)  # the bag tag
    font = ImageFont.load_default(size=28)
    draw.text((632, 440), "AU 207", fill="#17212b", font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _thread(customer_id: int) -> Conversation | None:
    return Conversation.objects.select_related("assignee").filter(contact__customer_id=customer_id).first()


def seed(world: DemoWorld) -> None:
    airline = world.airline
    customers = list(world.customers.values())  # messaging's demo gave the first ones conversations
    agent = world.users.get("airline_agent_1") or world.users["airline_owner"]
    if len(customers) < 2:
        return
    sophie, lukas = customers[:2]
    # A traveller of his own for the cancellation (no earlier conversation).
    noah, _created = Customer.objects.get_or_create(
        phone_number="+41791234004",
        defaults={"display_name": "Noah Keller", "country_code": "CH", "verified_at": timezone.now()},
    )
    with tenant_context(airline):
        if Attachment.objects.filter(upload_key=MARKER).exists():
            connection.set_schema_to_public()  # type: ignore[attr-defined]
            return
        # Sophie (flight AU 412): the agent quotes her question and sends her boarding pass.
        conversation = _thread(sophie.pk)
        if conversation is not None:
            # Whoever holds the conversation answers (the collision guard asks anyone else).
            replier = conversation.assignee or agent
            question = Message.objects.filter(conversation=conversation, body__startswith="Thanks. Will I").first()
            pdf = boarding_pass_pdf(
                passenger=sophie.display_name or "Passenger",
                flight="AU 412",
                route="Frankfurt - Lisbon",
                seat="14A",
                departs="10:40",
                gate="B44",
            )
            boarding, _created = attachment_upload(
                business=airline,
                uploader_key=f"user:{replier.pk}",
                file=SimpleUploadedFile("boarding-pass-AU412.pdf", pdf),
                upload_key=MARKER,
                conversation_id=conversation.pk,
            )
            reply = message_send_agent(
                business=airline,
                user=replier,
                conversation_id=conversation.pk,
                body="Here is your updated boarding pass for the new time.",
                reply_to=question.pk if question else None,
                attachment_id=boarding.pk,
                client_msg_id="demo-rich-1",
            ).message
            reaction_set(business=airline, message_id=reply.pk, emoji="🙏", customer=sophie)
        # Lukas (lost bag AU 207): he sends a photo of the damaged suitcase; the agent quotes it.
        conversation = _thread(lukas.pk)
        if conversation is not None:
            replier = conversation.assignee or agent
            photo, _created = attachment_upload(
                business=airline,
                uploader_key=f"customer:{lukas.pk}",
                file=SimpleUploadedFile("suitcase.jpg", suitcase_photo()),
                upload_key="demo-suitcase",
            )
            sent = message_send_customer(
                business=airline,
                customer=lukas,
                body="It arrived, but look at the corner. It's cracked.",
                attachment_id=photo.pk,
                client_msg_id="demo-rich-2",
            ).message
            answer = message_send_agent(
                business=airline,
                user=replier,
                conversation_id=conversation.pk,
                body="I'm sorry about that. I've opened damage report AU-DR-5521; we'll cover the repair.",
                reply_to=sent.pk,
                client_msg_id="demo-rich-3",
            ).message
            reaction_set(business=airline, message_id=answer.pk, emoji="👍", customer=lukas)
            reaction_set(business=airline, message_id=sent.pk, emoji="😢", user=replier)
        # Noah: a cancelled flight, with Rebook / Refund / Talk to us; he taps Rebook.
        asked = message_send_template(
            business=airline,
            customer=noah,
            template_name="flight_cancelled",
            body="Flight AU 118 Frankfurt - Zurich on Friday is cancelled. What would you like to do?",
            category="utility",
            author_key=f"user:{agent.pk}",
            author_kind=Message.Author.SYSTEM,
            client_msg_id="demo-rich-4",
            interactive={
                "type": "buttons",
                "options": [
                    {"id": "rebook", "title": "Rebook"},
                    {"id": "refund", "title": "Refund"},
                    {"id": "talk", "title": "Talk to us"},
                ],
            },
        ).message
        message_send_customer(
            business=airline,
            customer=noah,
            body="",
            choice={"message_id": asked.pk, "option_id": "rebook"},
            client_msg_id="demo-rich-5",
        )
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    world.lines.append(
        "Rich messages (Aurora Air inbox): a boarding-pass PDF, a suitcase photo, quoted replies, reactions, "
        "and a cancellation with Rebook / Refund / Talk to us buttons."
    )
