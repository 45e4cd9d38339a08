"""The demo's rich messages: a boarding-pass PDF, a photo, quoted replies, reactions and a
button template the customer tapped; seeding twice changes nothing."""

from __future__ import annotations

from django.core.files.storage import storages
from django_tenants.utils import tenant_context

from attachments import content
from attachments.demo import boarding_pass_pdf, seed, suitcase_photo
from attachments.models import Attachment
from messaging import demo as messaging_demo
from messaging.models import Message, Reaction
from tenancy.demo import DemoWorld
from tests.conftest import World


def test_generated_files_are_what_they_claim() -> None:
    pdf = boarding_pass_pdf(passenger="A", flight="AU 1", route="X - Y", seat="1A", departs="9:00", gate="B1")
    assert content.sniff(pdf).content_type == "application/pdf" and b"startxref" in pdf
    assert content.sniff(suitcase_photo()).content_type == "image/jpeg"


def test_demo_seeds_rich_messages_once(world: World) -> None:
    demo = DemoWorld(staff=world.staff, airline=world.business_a, bakery=world.business_b)
    demo.users.update(
        airline_agent_1=world.agent_a,
        airline_owner=world.owner_a,
        bakery_agent=world.agent_b,
        bakery_owner=world.owner_b,
    )
    messaging_demo.seed(demo)
    seed(demo)
    with tenant_context(world.business_a):
        files = list(Attachment.objects.filter(upload_key__in=["demo-boarding-pass", "demo-suitcase"]).order_by("kind"))
        assert [(a.kind, a.message_id is not None) for a in files] == [("document", True), ("image", True)]
        assert all(storages["attachments"].exists(a.path) for a in files)
        assert Message.objects.filter(reply_to__isnull=False, author_kind="agent").count() >= 2
        assert Reaction.objects.count() >= 3
        tap = Message.objects.get(choice_id="rebook")
        assert (
            tap.body == "Rebook"
            and tap.reply_to is not None
            and tap.reply_to.interactive["options"][2]["title"] == "Talk to us"
        )
        counts = (Message.objects.count(), Attachment.objects.count(), Reaction.objects.count())
    seed(demo)
    with tenant_context(world.business_a):
        assert (Message.objects.count(), Attachment.objects.count(), Reaction.objects.count()) == counts
